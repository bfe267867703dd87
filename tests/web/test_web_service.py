"""Generation service, embedded mode: quality gate, database pool and picks, live writing, leases."""

import json
import random
from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from billionsongs.web.songs import picking, pool, quality, queue
from billionsongs.web.songs.models import PoolEntry, Song, Status
from billionsongs.web.songs.worker import Worker

pytestmark = pytest.mark.django_db

GOOD = "\n".join(["I was walking home in the rain tonight", "Every light in the city burning bright", "",
                  "Oh oh, take me home", "You said forever, I said maybe so"])


@pytest.fixture(autouse=True)
def _one_torch_thread():
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def lenient(settings):
    """The tiny test model writes one-line gibberish: let its songs pass the gate."""
    settings.QUALITY_MIN_LINES = 1
    settings.QUALITY_MIN_CHARS = 1
    settings.QUALITY_MIN_DISTINCT_WORDS = 0.0


def test_quality_gate_rules():
    rules = quality.Rules()
    assert quality.check("Walking Home", GOOD, rules) == ""
    assert quality.check("", GOOD, rules) == quality.NO_TITLE
    assert quality.check("Short", "one line\ntwo lines", rules) == quality.TOO_SHORT
    assert quality.check("Long", "a line of lyrics\n" * 200, rules) == quality.TOO_LONG
    assert quality.check("Loop", "\n".join(["la la la la la la"] * 5 + ["something else here"] * 2), rules) \
        == quality.REPEATED_LINE
    words = "\n".join(f"baby baby baby baby baby {w}" for w in ["one", "two", "three", "four", "five", "six"])
    assert quality.check("Baby", words, rules) == quality.REPEATED_WORDS
    assert "rejected: 2 (66.7%)" in quality.report(["", "too short", "too short"])


def test_rejected_songs_stay_reachable_but_never_enter_the_pool(client, make_song, settings):
    settings.POOL_TARGET = 10
    make_song(1, status=Status.PENDING)
    make_song(2, status=Status.PENDING)

    class Result:
        def __init__(self, song_id, lyrics):
            self.id, self.title, self.lyrics, self.model, self.tokens, self.error = song_id, "T", lyrics, "m", 9, None

    queue.complete(queue.claim_batch(2), [Result(1, GOOD), Result(2, "oh baby baby la la la la\n" * 6 + GOOD)])
    assert Song.objects.get(pk=1).quality == "" and Song.objects.get(pk=2).quality == quality.REPEATED_LINE
    assert list(PoolEntry.objects.values_list("song_id", flat=True)) == [1]
    assert client.get("/song/2/").status_code == 200


def test_database_pool_counts_shows_and_warms_to_75_percent(make_song, settings):
    settings.POOL_TARGET, settings.POOL_MAX_SHOWS = 8, 3
    for song_id in range(1, 11):
        make_song(song_id * 10**17)
    make_song(5, quality=quality.TOO_SHORT)  # never loaded
    db_pool = pool.DatabasePool()
    assert pool.warm(db_pool) == 6 and db_pool.size() == 6 and db_pool.deficit() == 2
    assert 5 not in PoolEntry.objects.values_list("song_id", flat=True)
    assert pool.warm(db_pool) == 0
    shown = [db_pool.take() for _ in range(18)]  # 6 songs × 3 shows, then dry
    assert db_pool.size() == 0 and db_pool.take() is None
    assert all(shown.count(song_id) == 3 for song_id in set(shown)) and len(set(shown)) == 6
    settings.POOL_MAX_SHOWS = 1
    db_pool.add([10**17, 2 * 10**17])
    assert sorted([db_pool.take(), db_pool.take()]) == [10**17, 2 * 10**17] and db_pool.take() is None


def test_random_picks_are_three_pool_to_one_top_voted(make_song, settings):
    settings.POOL_MAX_SHOWS = 10**6
    make_song(100)
    make_song(200, score=5)
    make_song(300, score=1)
    pool.DatabasePool().add([100])
    random.seed(5)
    picks = [picking.random_pick().song_id for _ in range(800)]
    assert 0.70 < picks.count(100) / 800 < 0.80
    assert picks.count(200) > 3 * picks.count(300)  # top songs weighted by score (5:1)
    settings.PICK_WEIGHTS = {"pool": 0, "top": 1}
    assert 100 not in {picking.random_pick().song_id for _ in range(50)}


def test_dry_pool_serves_a_written_song_or_says_it_is_being_written(client, make_song):
    response = client.get("/")  # nothing written at all: a new ID, and its page says so at once
    assert response.status_code == 302 and response["Location"].endswith("?fallback=random")
    assert "being written" in client.get(response["Location"]).content.decode()
    Song.objects.all().delete()
    make_song(77)
    assert {client.get("/")["Location"] for _ in range(10)} == {"/song/77/"}


def test_hidden_pooled_song_is_skipped_and_removed(make_song, settings):
    make_song(1, hidden=True)
    make_song(2)
    settings.PICK_WEIGHTS = {"pool": 1}
    pool.DatabasePool().add([1])
    assert picking.random_pick().song_id == 2
    assert not PoolEntry.objects.exists()


def test_a_pooled_pick_is_checked_once_and_a_stale_top_pick_still_gets_the_fallback(client, make_song, settings):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    make_song(5)
    settings.PICK_WEIGHTS = {"pool": 1}
    settings.POOL_MAX_SHOWS = 10**6
    pool.DatabasePool().add([5])
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/")["Location"] == "/song/5/"
    song_table = Song._meta.db_table
    assert sum(f'FROM "{song_table}"' in q["sql"] for q in queries.captured_queries) == 1
    settings.PICK_WEIGHTS = {"top": 1}
    make_song(6, score=3)
    assert client.get("/")["Location"] == "/song/6/"  # the top list is now cached for a minute
    Song.objects.filter(pk=6).update(hidden=True)
    assert client.get("/")["Location"] == "/song/6/?fallback=random"


def test_whole_flow_request_queue_worker_stored_page_with_live_text(client, tiny_model_dir, lenient, settings,
                                                                   watched_engine):
    settings.PROGRESS_SECONDS = 0
    settings.POOL_TARGET = 100
    for song_id in range(6):
        assert "being written" in client.get(f"/song/{song_id}/").content.decode()  # request → pending row
    seen = []

    def watch(song_id, token):
        seen.append(Song.objects.get(pk=song_id).progress)

    worker = Worker(str(tiny_model_dir), poll_seconds=0, generator_factory=watched_engine(token=watch),
                    refill_pool=False)
    worker.run(until_empty=True)
    assert seen and max(seen) > 1, "the worker publishes the text while writing"
    done = list(Song.objects.filter(status=Status.DONE).values_list("id", flat=True))
    assert done and Song.objects.filter(status=Status.FAILED).exists(), "tiny model: both outcomes"
    assert set(PoolEntry.objects.values_list("song_id", flat=True)) == set(done)
    for song in Song.objects.all():
        assert (song.partial, song.progress) == ("", 0)
        events = b"".join(client.get(f"/song/{song.id}/stream/").streaming_content).decode()
        if song.status == Status.DONE:
            assert client.get(f"/song/{song.id}/").status_code == 200
            assert "event: done" in events and f"/song/{song.id}/" in events
        else:
            assert "event: failed" in events


def test_stream_sends_progress_then_ends_and_respects_its_slots(client, make_song, settings):
    settings.STREAM_SECONDS = 0.3
    make_song(9, status=Status.GENERATING, claim="w", claimed_at=timezone.now(), partial="Rain\nI was", progress=4)
    response = client.get("/song/9/stream/")
    assert response["Content-Type"] == "text/event-stream" and "no-cache" in response["Cache-Control"]
    body = b"".join(response.streaming_content).decode()
    assert body.startswith(f"retry: {int(settings.STREAM_RETRY_SECONDS * 1000)}\n\n")
    progress = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert progress[0] == {"title": "", "text": "Rain\nI was", "tokens": 4, "max_tokens": None}  # no title yet
    make_song(10, status=Status.GENERATING, claim="w", claimed_at=timezone.now(), partial="Rain\n\nI was", progress=5)
    body = b"".join(client.get("/song/10/stream/").streaming_content).decode()
    assert json.loads(body.split("data: ")[1].split("\n")[0])["title"] == "Rain"
    assert "Rain" in client.get("/song/9/").content.decode()  # the page opens with the text so far
    settings.STREAM_SLOTS = 0
    assert client.get("/song/9/stream/").status_code == 204  # no free slot: the page falls back to reloading
    assert client.get("/song/abc/stream/").status_code == 404


def test_progress_answers_the_stream_state_at_once_for_pages_without_a_stream(client, make_song):
    make_song(9, status=Status.GENERATING, claim="w", claimed_at=timezone.now(), partial="Rain\n\nI was", progress=5)
    response = client.get("/song/9/progress/")
    assert response.status_code == 200 and "no-cache" in response["Cache-Control"]
    assert response.json() == {"event": "progress", "title": "Rain", "text": "I was", "tokens": 5, "max_tokens": None}
    Song.objects.filter(pk=9).update(status=Status.DONE, title="Rain", lyrics="I was")
    assert client.get("/song/9/progress/").json() == {"event": "done", "url": "/song/9/"}
    Song.objects.filter(pk=9).update(status=Status.FAILED)
    assert client.get("/song/9/progress/").json()["event"] == "failed"
    Song.objects.filter(pk=9).update(hidden=True)
    assert client.get("/song/9/progress/").status_code == 404
    assert client.get("/song/10/progress/").status_code == 404  # asking for progress queues nothing
    assert client.get("/song/abc/progress/").status_code == 404
    assert not Song.objects.filter(pk=10).exists()


def test_expired_lease_is_requeued_and_heartbeat_keeps_it(make_song, settings):
    make_song(1, status=Status.PENDING)
    claim = queue.claim_batch(1)
    Song.objects.filter(pk=1).update(claimed_at=timezone.now() - timedelta(minutes=5))
    queue.heartbeat(claim)  # a live worker renews its lease …
    worker = Worker(generator_factory=lambda m: None, stale_after=timedelta(seconds=60), refill_pool=False)
    worker.maintain(force=True)
    assert Song.objects.get(pk=1).status == Status.GENERATING
    Song.objects.filter(pk=1).update(claimed_at=timezone.now() - timedelta(minutes=5))  # … a killed one cannot
    worker.maintain(force=True)
    assert Song.objects.get(pk=1).status == Status.PENDING


def test_idle_worker_refills_the_pool_behind_visitors_songs(make_song, settings):
    settings.POOL_TARGET = 50
    worker = Worker(generator_factory=lambda m: None, batch_size=4)
    assert worker.maintain(force=True) == 4
    assert Song.objects.filter(status=Status.PENDING, priority=queue.POOL).count() == 4
    make_song(5, status=Status.PENDING)
    assert queue.claim_batch(1).ids == [5]  # a visitor's song goes first


def test_second_stop_abandons_the_batch_and_returns_its_songs(make_song):
    make_song(1, status=Status.PENDING)

    class Stoppable:
        model_name = "stoppable"

        def run(self, take, batch_size=16, on_token=None, on_song=None):
            ids = take(batch_size)
            worker.stop()
            worker.stop()
            on_token(ids[0], 1)

        def decode(self, tokens):
            return ""

    worker = Worker(generator_factory=lambda m: Stoppable(), poll_seconds=0)
    assert worker.run() == 0
    assert Song.objects.get(pk=1).status == Status.PENDING


def test_worker_reconnects_after_losing_the_database(make_song, tiny_model_dir, monkeypatch, caplog):
    make_song(1, status=Status.PENDING)
    real = queue.claim_batch
    calls = []

    def flaky(limit):
        calls.append(limit)
        if len(calls) == 1:
            raise OperationalError("server closed the connection unexpectedly")
        return real(limit)

    monkeypatch.setattr(queue, "claim_batch", flaky)
    monkeypatch.setattr(Worker, "_sleep", lambda self, seconds: None)
    worker = Worker(str(tiny_model_dir), poll_seconds=0, refill_pool=False)
    worker.run(until_empty=True)
    assert "reconnecting" in caplog.text
    assert Song.objects.get(pk=1).status in (Status.DONE, Status.FAILED)
