"""Voting: the widget, CSRF, logging in to vote, one vote per person, concurrent counts, Top and my votes."""

import re
import threading

import pytest
from django.contrib.auth.models import User
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.test import Client

from billionsongs.web.songs.models import Song, Status
from billionsongs.web.votes.models import Vote
from billionsongs.web.votes.services import PENDING_VOTE, PENDING_VOTE_SECONDS, cast_vote

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


def csrf_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


def counts(song_id: int = 42) -> tuple[int, int, int]:
    song = Song.objects.get(pk=song_id)
    return song.up_votes, song.down_votes, song.score


def test_widget_is_private_and_shows_counts_and_own_vote(client, song, user):
    cast_vote(user, 42, 1)
    anonymous = client.get("/song/42/votes/")
    assert anonymous.status_code == 200
    cache = anonymous["Cache-Control"]
    assert "private" in cache and "no-store" in cache and "public" not in cache
    html = anonymous.content.decode()
    assert 'data-count="up">1<' in html and 'data-count="down">0<' in html
    assert 'href="/accounts/login/?next=/song/42/"' in html
    client.force_login(user)
    html = client.get("/song/42/votes/").content.decode()
    assert "You voted up." in html
    assert 'aria-pressed="true"' in html


def test_vote_without_csrf_token_is_refused(song, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.post("/song/42/vote/", {"value": "up"}).status_code == 403
    assert counts() == (0, 0, 0)


def test_vote_with_csrf_token_counts_and_returns_to_the_widget(song, user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    token = csrf_token(client.get("/song/42/votes/").content.decode())
    response = client.post("/song/42/vote/", {"value": "up", "next": "/song/42/votes/",
                                              "csrfmiddlewaretoken": token})
    assert response.status_code == 303
    assert response["Location"] == "/song/42/votes/"
    assert counts() == (1, 0, 1)
    assert "no-store" in response["Cache-Control"]


def test_anonymous_voter_logs_in_and_comes_back_to_the_song_with_the_vote_cast(song, user):
    client = Client(enforce_csrf_checks=True)
    token = csrf_token(client.get("/song/42/votes/").content.decode())
    response = client.post("/song/42/vote/", {"value": "up", "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/song/42/"
    assert counts() == (0, 0, 0)
    login_page = client.get(response["Location"])
    assert login_page.status_code == 200
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD, "next": "/song/42/",
                                                "csrfmiddlewaretoken": csrf_token(login_page.content.decode())})
    assert response.status_code == 302
    assert response["Location"] == "/song/42/"
    assert counts() == (1, 0, 1)  # the click that sent them to log in counted
    assert "You voted up." in client.get("/song/42/votes/").content.decode()
    token = csrf_token(client.get("/song/42/votes/").content.decode())
    client.post("/song/42/vote/", {"value": "down", "csrfmiddlewaretoken": token})
    client.login(username="alice", password=PASSWORD)  # cast once: a later login does not bring it back
    assert counts() == (0, 1, -1)
    assert PENDING_VOTE not in client.session


def test_anonymous_voter_who_signs_up_has_the_vote_cast(client, song):
    client.post("/song/42/vote/", {"value": "down"})
    response = client.post("/accounts/signup/", {"username": "bob", "password1": PASSWORD, "password2": PASSWORD,
                                                 "next": "/song/42/"})
    assert response.status_code == 302
    assert counts() == (0, 1, -1)


@pytest.mark.parametrize("change", [{"hidden": True}, {"status": Status.FAILED}, {"status": Status.PENDING}])
def test_a_pending_vote_on_a_song_that_is_no_longer_shown_is_dropped(client, song, user, change):
    client.post("/song/42/vote/", {"value": "up"})
    assert client.session[PENDING_VOTE][:2] == [42, "up"]
    Song.objects.filter(pk=42).update(**change)
    client.login(username="alice", password=PASSWORD)
    assert not Vote.objects.exists() and PENDING_VOTE not in client.session


def test_a_pending_vote_left_behind_is_not_cast_by_a_much_later_login(client, song, user):
    client.post("/song/42/vote/", {"value": "up"})
    session = client.session
    session[PENDING_VOTE][2] -= PENDING_VOTE_SECONDS + 1
    session.save()
    client.login(username="alice", password=PASSWORD)
    assert counts() == (0, 0, 0)


def test_clearing_before_logging_in_keeps_nothing(client, song):
    client.post("/song/42/vote/", {"value": "clear"})
    assert PENDING_VOTE not in client.session


def test_a_pending_vote_that_cannot_be_cast_never_fails_the_login(client, song, user, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("database is locked")

    monkeypatch.setattr("billionsongs.web.votes.signals.cast_vote", broken)
    client.post("/song/42/vote/", {"value": "up"})
    login_page = client.get("/accounts/login/?next=/song/42/")
    response = client.post("/accounts/login/", {"username": "alice", "password": PASSWORD, "next": "/song/42/"})
    assert login_page.status_code == 200 and response.status_code == 302 and response["Location"] == "/song/42/"
    assert client.get("/my/votes/").status_code == 200  # logged in
    assert counts() == (0, 0, 0)


def test_vote_can_change_and_be_taken_back(client, song, user):
    client.force_login(user)
    client.post("/song/42/vote/", {"value": "up"})
    assert counts() == (1, 0, 1)
    client.post("/song/42/vote/", {"value": "down"})
    assert counts() == (0, 1, -1)
    assert Vote.objects.count() == 1
    client.post("/song/42/vote/", {"value": "clear"})
    assert counts() == (0, 0, 0)
    assert Vote.objects.count() == 0


def test_offsite_next_is_ignored(client, song, user):
    client.force_login(user)
    response = client.post("/song/42/vote/", {"value": "up", "next": "https://evil.example/"})
    assert response["Location"] == "/song/42/"


@pytest.mark.parametrize("value", ["", "sideways", "2"])
def test_bad_vote_value_is_400(client, song, user, value):
    client.force_login(user)
    assert client.post("/song/42/vote/", {"value": value}).status_code == 400


@pytest.mark.parametrize("song_id", ["abc", "-1", "1.5", str(2**63), "43", "44", "45"])
def test_vote_on_missing_bad_hidden_or_unwritten_song_is_404(client, make_song, user, song_id):
    make_song(43, hidden=True)
    make_song(44, status=Status.FAILED)
    make_song(45, status=Status.PENDING)
    client.force_login(user)
    assert client.post(f"/song/{song_id}/vote/", {"value": "up"}).status_code == 404
    assert client.get(f"/song/{song_id}/votes/").status_code == 404
    assert Vote.objects.count() == 0


def test_database_allows_one_vote_per_user_and_song(song, user):
    Vote.objects.create(user=user, song=song, value=Vote.UP)
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(user=user, song=song, value=Vote.DOWN)
    with pytest.raises(IntegrityError), transaction.atomic():
        Vote.objects.create(user=User.objects.create_user("bob"), song=song, value=5)


def test_deleting_a_user_recounts_their_votes(song, make_user):
    alice, bob = make_user("alice"), make_user("bob")
    cast_vote(alice, 42, 1)
    cast_vote(bob, 42, -1)
    assert counts() == (1, 1, 0)
    alice.delete()
    assert counts() == (0, 1, -1)


@pytest.mark.django_db(transaction=True)
def test_concurrent_votes_are_all_counted(make_song, make_user):
    make_song(42)
    users = [make_user(f"user{i}") for i in range(10)]
    barrier = threading.Barrier(len(users) * 2)
    errors = []

    def vote(user, value: str):
        client = Client()
        client.force_login(user)
        try:
            barrier.wait()
            response = client.post("/song/42/vote/", {"value": value})
            if response.status_code != 303:
                errors.append(response.status_code)
        except Exception as exc:  # reported below; a thread cannot fail the test itself
            errors.append(exc)
        finally:
            close_old_connections()
            connection.close()

    # Every user votes twice at once (up and down): whichever lands last wins, but each user counts once.
    threads = [threading.Thread(target=vote, args=(u, v)) for u in users for v in ("up", "down")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    up, down, score = counts()
    assert up + down == len(users) == Vote.objects.count()
    assert (up, down) == (Vote.objects.filter(value=1).count(), Vote.objects.filter(value=-1).count())
    assert score == up - down


def test_top_lists_best_scored_visible_songs_with_counts(client, make_song, make_user):
    users = [make_user(f"u{i}") for i in range(3)]
    for song_id in (1, 2, 3, 4):
        make_song(song_id, title=f"Song {song_id}")
    make_song(5, title="Hidden gem")
    for user in users:
        cast_vote(user, 2, 1)
        cast_vote(user, 5, 1)
    cast_vote(users[0], 1, 1)
    cast_vote(users[0], 3, -1)
    Song.objects.filter(pk=5).update(hidden=True)
    response = client.get("/top/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "public" in response["Cache-Control"] and "max-age=300" in response["Cache-Control"]
    assert html.index("Song 2") < html.index("Song 1")
    assert "▲ 3" in html
    assert "Song 3" not in html and "Song 4" not in html and "Hidden gem" not in html


def test_top_is_cached_for_five_minutes_but_hiding_a_song_drops_it(client, admin_client, make_song, user):
    make_song(1, title="First")
    cast_vote(user, 1, 1)
    assert "First" in client.get("/top/").content.decode()
    make_song(2, title="Second")
    cast_vote(user, 2, 1)
    assert "Second" not in client.get("/top/").content.decode()  # still the cached chart
    admin_client.post("/admin/songs/song/", {"action": "hide", "_selected_action": ["1"]})
    html = client.get("/top/").content.decode()
    assert "First" not in html and "Second" in html


def test_my_votes_needs_login_and_is_private(client, make_song, user):
    response = client.get("/my/votes/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/my/votes/"
    make_song(1, title="Loved")
    make_song(2, title="Not for me")
    cast_vote(user, 1, 1)
    cast_vote(user, 2, -1)
    client.force_login(user)
    response = client.get("/my/votes/")
    html = response.content.decode()
    assert "Loved" in html and "Not for me" in html and "▲ up" in html and "▼ down" in html
    assert "private" in response["Cache-Control"] and "no-store" in response["Cache-Control"]
