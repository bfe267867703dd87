"""Song pages, random picks, caching headers, bad IDs, failed and hidden songs."""

import re
import threading

import pytest
from django.db import close_old_connections, connection
from django.test import Client
from django.urls import reverse

from billionsongs.web.songs.models import Song, Status

pytestmark = pytest.mark.django_db


def cache_control(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part.strip()}


def max_age(response) -> int:
    return next(int(p.split("=")[1]) for p in cache_control(response) if p.startswith("max-age="))


def test_song_page_shows_title_and_lyrics_with_verses(client, song):
    response = client.get("/song/42/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h1 class=\"song-title\">Walking Home</h1>" in html
    # Two verses, line breaks kept inside each.
    assert html.count('<p class="verse">') == 2
    # Each line is karaoke syllable spans (text unchanged); lines are still joined by <br>.
    text = re.sub(r"<(?!br>)[^>]+>", "", html)
    assert "I was walking home in the rain tonight<br>Every light in the city burning bright" in text
    assert 'href="/"' in html and "Random song" in html
    assert '<meta property="og:title" content="Walking Home">' in html
    assert '<meta property="og:url" content="http://testserver/song/42/">' in html
    assert '<meta name="twitter:card" content="summary">' in html
    assert 'src="/song/42/votes/"' in html  # the vote widget is a separate request


def test_song_page_is_publicly_cacheable_and_identical_for_everyone(client, song, user):
    anonymous = client.get("/song/42/")
    assert {"public"} <= cache_control(anonymous)
    assert max_age(anonymous) >= 3600
    assert anonymous["ETag"]
    # Nothing per-visitor: no cookies set, no Vary: Cookie, same bytes when logged in.
    assert not anonymous.cookies
    assert "Cookie" not in anonymous.get("Vary", "")
    client.force_login(user)
    logged_in = client.get("/song/42/")
    assert logged_in.content == anonymous.content
    assert logged_in["ETag"] == anonymous["ETag"]
    assert "Cookie" not in logged_in.get("Vary", "")


def test_etag_answers_not_modified(client, song):
    etag = client.get("/song/42/")["ETag"]
    again = client.get("/song/42/", HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", str(2**63), str(2**64), "1e3", "007", "+7", "%20"])
def test_malformed_or_out_of_range_ids_are_404(client, bad):
    response = client.get(f"/song/{bad}/")
    assert response.status_code == 404
    assert "No song here" in response.content.decode()
    assert Song.objects.count() == 0


def test_largest_id_is_a_song(client):
    response = client.get(f"/song/{2**63 - 1}/")
    assert response.status_code == 200
    assert Song.objects.get().id == 2**63 - 1


def test_new_id_queues_one_song_and_says_it_is_being_written(client):
    first = client.get("/song/7/")
    assert first.status_code == 200
    html = first.content.decode()
    assert "being written" in html
    assert '<meta http-equiv="refresh" content="3;url=/song/7/">' in html
    # Must never be cached: the finished song has to replace it.
    assert {"no-store", "private"} <= cache_control(first)
    assert not first.has_header("ETag")
    client.get("/song/7/")
    song = Song.objects.get()
    assert (song.id, song.status) == (7, Status.PENDING)


def test_written_song_with_query_string_redirects_to_its_one_url(client, song):
    response = client.get("/song/42/?fallback=random&utm_source=x")
    assert response.status_code == 302
    assert response["Location"] == "/song/42/"


def test_writing_page_keeps_fallback_in_its_refresh(client):
    html = client.get("/song/8/?fallback=random").content.decode()
    assert 'content="3;url=/song/8/?fallback=random"' in html


def test_failed_song_is_404_or_redirects_to_a_random_song_on_request(client, make_song, settings):
    make_song(5, status=Status.FAILED, error="too long")
    make_song(6)
    assert client.get("/song/5/").status_code == 404
    response = client.get("/song/5/?fallback=random")
    assert response.status_code == 302
    assert response["Location"] == "/song/6/"
    assert "no-store" in cache_control(response)


def test_hidden_song_is_404_and_never_picked(client, make_song, settings):
    make_song(1, hidden=True)
    make_song(2)
    assert client.get("/song/1/").status_code == 404
    assert client.get("/song/1/votes/").status_code == 404
    assert {client.get("/")["Location"] for _ in range(20)} == {"/song/2/"}


def test_random_redirect_is_never_cached_and_picks_written_songs(client, make_song, settings):
    make_song(10)
    make_song(11)
    make_song(12, status=Status.PENDING)
    locations = {client.get("/")["Location"] for _ in range(40)}
    assert locations == {"/song/10/", "/song/11/"}
    response = client.get("/")
    assert response.status_code == 302
    assert "no-store" in cache_control(response)


def test_random_new_id_carries_fallback_so_a_failure_never_shows_404(client, settings):
    settings.PICK_WEIGHTS = {"fresh": 1.0}
    location = client.get("/")["Location"]
    assert location.startswith("/song/") and location.endswith("/?fallback=random")
    song_id = int(location.split("/")[2])
    assert 0 <= song_id < 2**63


def test_random_with_no_songs_at_all_still_redirects(client, settings):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].endswith("?fallback=random")


def test_post_to_song_page_is_refused(client, song):
    assert client.post("/song/42/").status_code == 405


def test_written_page_is_served_from_the_cache_without_queries(client, song, django_assert_num_queries):
    first = client.get("/song/42/")
    with django_assert_num_queries(0):
        again = client.get("/song/42/")
    assert again.status_code == 200 and again.content == first.content
    assert "max-age=86400" in again["Cache-Control"] and again["ETag"]


def test_admin_can_hide_a_song(admin_client, client, song):
    assert client.get("/song/42/").status_code == 200  # now in the page cache
    response = admin_client.post(reverse("admin:songs_song_changelist"),
                                 {"action": "hide", "_selected_action": ["42"]})
    assert response.status_code == 302
    assert Song.objects.get(pk=42).hidden
    assert client.get("/song/42/").status_code == 404
    admin_client.post(reverse("admin:songs_song_changelist"), {"action": "unhide", "_selected_action": ["42"]})
    assert client.get("/song/42/").status_code == 200


def test_admin_pages_render(admin_client, song):
    assert admin_client.get(reverse("admin:songs_song_changelist")).status_code == 200
    assert admin_client.get(reverse("admin:songs_song_change", args=[42])).status_code == 200
    assert admin_client.get(reverse("admin:votes_vote_changelist")).status_code == 200


def test_static_files_are_served(client):
    response = client.get("/static/billionsongs/site.css")
    assert response.status_code == 200
    assert b"prefers-color-scheme: dark" in b"".join(response.streaming_content)


@pytest.mark.django_db(transaction=True)
def test_concurrent_requests_for_a_new_id_create_one_queued_song():
    if connection.vendor == "sqlite" and connection.settings_dict["NAME"].startswith("file:memorydb"):
        pytest.fail("concurrency tests need a file database (see web_test_settings.py)")
    statuses, barrier = [], threading.Barrier(6)

    def visit():
        try:
            barrier.wait()
            statuses.append(Client().get("/song/123456789/").status_code)
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=visit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    assert list(Song.objects.values_list("id", "status")) == [(123456789, Status.PENDING)]


@pytest.mark.parametrize(("typed", "page"), [("42", "/song/42/"), (" #1,234 ", "/song/1234/"), ("007", "/song/7/"),
                                             ("0", "/song/0/"), ("9223372036854775807", "/song/9223372036854775807/")])
def test_the_song_number_box_goes_to_that_songs_one_url(client, typed, page):
    response = client.get("/song/", {"n": typed})
    assert response.status_code == 302 and response["Location"] == page


@pytest.mark.parametrize("typed", ["", "abc", "-1", "1.5", "9223372036854775808", "４２"])
def test_the_song_number_box_answers_404_for_what_is_not_a_song_number(client, typed):
    assert client.get("/song/", {"n": typed}).status_code == 404


def test_every_page_has_the_song_number_box(client, song):
    html = client.get("/song/42/").content.decode()
    assert '<form class="song-lookup" action="/song/" method="get" role="search">' in html
    assert 'name="n"' in html


def test_robots_and_favicon_answer_by_their_fixed_names(client):
    robots = client.get("/robots.txt")
    assert robots.status_code == 200 and robots["Content-Type"].startswith("text/plain")
    assert "public" in robots["Cache-Control"]
    rules = robots.content.decode().splitlines()
    assert "User-agent: *" in rules and "Disallow: /song/*/vote/" in rules and "Disallow: /accounts/" in rules
    assert not any(rule.strip() in ("Disallow: /", "Disallow: /song/") for rule in rules), "songs stay crawlable"
    icon = client.get("/favicon.ico")
    assert icon.status_code == 301 and icon["Location"].endswith("/billionsongs/favicon.svg")
