"""Accounts: sign up, log in and out, change and reset a password (Django's views, our templates)."""

import re

import pytest
from django.contrib.auth.models import User
from django.core import mail

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def test_signup_logs_in_and_returns_to_next(client):
    page = client.get("/accounts/signup/?next=/song/42/")
    assert page.status_code == 200 and 'name="next" value="/song/42/"' in page.content.decode()
    response = client.post("/accounts/signup/", {"username": "carol", "email": "carol@example.org",
                                                 "password1": PASSWORD, "password2": PASSWORD, "next": "/song/42/"})
    assert response.status_code == 302
    assert response["Location"] == "/song/42/"
    assert client.get("/accounts/").content.decode().count("carol") >= 1


def test_signup_applies_password_validators(client):
    response = client.post("/accounts/signup/", {"username": "dave", "password1": "12345678",
                                                 "password2": "12345678"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "too common" in html or "entirely numeric" in html
    assert not User.objects.filter(username="dave").exists()


def test_signup_ignores_offsite_next(client):
    response = client.post("/accounts/signup/", {"username": "erin", "password1": PASSWORD, "password2": PASSWORD,
                                                 "next": "https://evil.example/"})
    assert response["Location"] == "/accounts/"


def test_login_and_logout(client, user):
    assert client.get("/accounts/").status_code == 302
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD})
    assert response["Location"] == "/accounts/"
    assert "alice" in client.get("/accounts/").content.decode()
    assert client.get("/accounts/logout/").status_code == 405  # logging out takes a POST (CSRF-protected)
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get("/accounts/").status_code == 302


def test_wrong_password_is_refused(client, user):
    response = client.post("/accounts/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session


def test_password_change(client, user):
    client.force_login(user)
    assert client.get("/accounts/password_change/").status_code == 200
    response = client.post("/accounts/password_change/", {"old_password": PASSWORD, "new_password1": "a new tune 1989",
                                                          "new_password2": "a new tune 1989"})
    assert response["Location"] == "/accounts/password_change/done/"
    user.refresh_from_db()
    assert user.check_password("a new tune 1989")


def test_password_reset_by_email(client, user):
    response = client.post("/accounts/password_reset/", {"email": "alice@example.org"})
    assert response["Location"] == "/accounts/password_reset/done/"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Reset your Billion Songs password"
    link = re.search(r"http://testserver(/accounts/reset/\S+/)", message.body).group(1)
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    response = client.post(form_page.redirect_chain[-1][0], {"new_password1": "a fresh verse 77",
                                                             "new_password2": "a fresh verse 77"})
    assert response["Location"] == "/accounts/reset/done/"
    user.refresh_from_db()
    assert user.check_password("a fresh verse 77")

