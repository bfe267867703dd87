"""The generation queue and worker: pending rows are claimed once, written in batches, and never lost."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.utils import timezone

from billionsongs.model.generate import Generator
from billionsongs.model.generate import Song as EngineSong
from billionsongs.web.songs import queue
from billionsongs.web.songs.models import Song, Status
from billionsongs.web.songs.worker import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The tiny model gains nothing from threads, and on a busy 2-core machine they make it 50x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def expected(tiny_model_dir):
    """What the engine itself writes for IDs 0..11 with the tiny model (some succeed, some are 'too long')."""
    return {song.id: song for song in Generator(str(tiny_model_dir)).generate(range(12), batch_size=12)}


def test_worker_writes_pending_songs_with_the_model(client, tiny_model_dir, expected):
    for song_id in range(12):
        assert client.get(f"/song/{song_id}/").status_code == 200  # queues the song
    assert Song.objects.filter(status=Status.PENDING).count() == 12
    worker = Worker(str(tiny_model_dir), batch_size=5, poll_seconds=0)
    assert worker.run(until_empty=True) == 0
    assert worker.written == 12
    for song in Song.objects.all():
        engine = expected[song.id]
        if engine.error:
            assert (song.status, song.error, song.lyrics) == (Status.FAILED, engine.error, "")
            assert client.get(f"/song/{song.id}/").status_code == 404
        else:
            assert song.status == Status.DONE
            assert song.model == engine.model
            assert song.tokens == engine.tokens
            assert song.lyrics == queue._clean(engine.lyrics)
            page = client.get(f"/song/{song.id}/")
            assert page.status_code == 200 and "public" in page["Cache-Control"]
    assert {s.error for s in expected.values()} >= {None, "too long"}, "fixture should give both outcomes"


def test_running_batch_takes_a_song_requested_meanwhile_and_stores_each_song_as_it_ends(client, tiny_model_dir,
                                                                                         expected, settings,
                                                                                         watched_engine):
    settings.PROGRESS_SECONDS = 0  # store each song the step it ends (by default those within 0.5 s share a commit)
    client.get("/song/0/"), client.get("/song/1/")  # two long songs (63 tokens) start the batch
    stored = []

    def token(song_id, token_id):
        if not Song.objects.filter(pk=6).exists():
            client.get("/song/6/")  # a visitor asks for a (37-token) song while the batch runs

    def song(result):
        stored.append((result.id, Song.objects.get(pk=result.id).status,
                       Song.objects.filter(status=Status.GENERATING).count()))

    worker = Worker(str(tiny_model_dir), batch_size=4, poll_seconds=0, refill_pool=False,
                    generator_factory=watched_engine(token=token, song=song))
    assert worker.run_once() == 3, "the running batch took the song asked for after it started"
    assert stored[0] == (6, Status.DONE, 2), "the short song was stored while the long ones were still writing"
    assert Song.objects.get(pk=6).lyrics == queue._clean(expected[6].lyrics)
    assert set(Song.objects.values_list("status", flat=True)) == {Status.DONE, Status.FAILED}


def test_a_song_ending_just_after_a_store_is_stored_without_waiting_for_the_next_song(client, tiny_model_dir,
                                                                                      settings, watched_engine):
    """Songs ending within PROGRESS_SECONDS share a commit; the later one must not wait for another song
    to end. Songs 6 and 8 (37 and 43 tokens) end 6 steps apart, the long songs 0 and 1 after 63."""
    settings.PROGRESS_SECONDS = 0.1
    for song_id in (0, 1, 6, 8):
        client.get(f"/song/{song_id}/")
    seen = []

    def token(song_id, token_id):
        seen.append(set(Song.objects.filter(status=Status.GENERATING).values_list("id", flat=True)))

    Worker(str(tiny_model_dir), batch_size=4, poll_seconds=0, refill_pool=False,
           generator_factory=watched_engine(token=token, step_seconds=0.01)).run_once()
    assert {0, 1} in seen, "songs 6 and 8 were both stored while the long songs were still being written"


@pytest.mark.parametrize("why", ["run time is up", "worker stopping"])
def test_a_batch_past_its_run_time_or_told_to_stop_takes_no_more_songs(client, tiny_model_dir, settings, why,
                                                                       watched_engine):
    client.get("/song/0/")
    settings.WORKER_RUN_SECONDS = 0 if why == "run time is up" else 300
    worker = Worker(str(tiny_model_dir), batch_size=4, poll_seconds=0, refill_pool=False)

    def token(song_id, token_id):
        if not Song.objects.filter(pk=6).exists():
            client.get("/song/6/")
            worker.stopping = why == "worker stopping"

    worker.generator_factory = watched_engine(token=token)
    assert worker.run_once() == 1, "the batch drained without taking the new song"
    assert Song.objects.get(pk=6).status == Status.PENDING and Song.objects.get(pk=0).status == Status.FAILED


def test_a_database_error_while_looking_for_more_songs_spares_the_running_batch(client, tiny_model_dir, monkeypatch,
                                                                               caplog):
    client.get("/song/0/")
    claim = queue.claim_batch(1)
    monkeypatch.setattr(queue, "claim_batch", lambda limit: claim)

    def unreachable(claim, limit):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(queue, "claim_more", unreachable)
    assert Worker(str(tiny_model_dir), batch_size=4, poll_seconds=0, refill_pool=False).run_once() == 1
    assert Song.objects.get(pk=0).status == Status.FAILED and Song.objects.get(pk=0).error == "too long"
    assert "could not take more songs" in caplog.text


def test_two_workers_never_claim_the_same_song(make_song):
    for song_id in range(7):
        make_song(song_id, status=Status.PENDING)
    first, second, third = queue.claim_batch(4), queue.claim_batch(4), queue.claim_batch(4)
    assert len(first.ids) == 4 and len(second.ids) == 3 and third.ids == []
    assert not set(first.ids) & set(second.ids)
    assert Song.objects.filter(status=Status.GENERATING).count() == 7


def test_only_the_claim_holder_can_complete(make_song, tiny_model_dir):
    make_song(3, status=Status.PENDING)
    stale = queue.claim_batch(1)
    queue.reset_stale(None)  # the first worker is presumed dead …
    fresh = queue.claim_batch(1)  # … and another takes the song
    result = Generator(str(tiny_model_dir)).generate([3])
    assert queue.complete(stale, result) == 0
    assert Song.objects.get(pk=3).status == Status.GENERATING
    assert queue.complete(fresh, result) == 1
    assert Song.objects.get(pk=3).status in (Status.DONE, Status.FAILED)


def test_stale_generating_rows_are_requeued(make_song):
    make_song(1, status=Status.GENERATING, claim="dead", claimed_at=timezone.now() - timedelta(hours=2))
    make_song(2, status=Status.GENERATING, claim="alive", claimed_at=timezone.now())
    assert queue.reset_stale(timedelta(minutes=30)) == 1
    assert Song.objects.get(pk=1).status == Status.PENDING
    assert Song.objects.get(pk=2).status == Status.GENERATING
    assert queue.reset_stale(None) == 1  # the embedded worker knows it is alone
    assert set(Song.objects.values_list("status", flat=True)) == {Status.PENDING}


def test_worker_started_with_reset_all_finishes_orphaned_songs(make_song, tiny_model_dir):
    make_song(4, status=Status.GENERATING, claim="killed", claimed_at=timezone.now())
    Worker(str(tiny_model_dir), reset_all_on_start=True, poll_seconds=0).run(until_empty=True)
    assert Song.objects.get(pk=4).status in (Status.DONE, Status.FAILED)


class Exploding:
    model_name = "exploding"

    def run(self, take, batch_size=16, on_token=None, on_song=None):
        take(batch_size)
        raise RuntimeError("out of memory")


def test_a_crashing_batch_returns_its_songs_then_gives_up(make_song, settings):
    settings.WORKER_MAX_ATTEMPTS = 2
    make_song(9, status=Status.PENDING)
    worker = Worker(generator_factory=lambda model: Exploding(), poll_seconds=0)
    with pytest.raises(RuntimeError):
        worker.run_once()
    song = Song.objects.get(pk=9)
    assert (song.status, song.attempts) == (Status.PENDING, 1)
    with pytest.raises(RuntimeError):
        worker.run_once()
    song = Song.objects.get(pk=9)
    assert (song.status, song.error) == (Status.FAILED, queue.CRASHED)


def test_a_batch_that_fails_keeps_the_songs_it_finished(make_song):
    make_song(1, status=Status.PENDING), make_song(2, status=Status.PENDING)

    class HalfWay:
        model_name = "half-way"

        def run(self, take, batch_size=16, on_token=None, on_song=None):
            first, _ = take(batch_size)
            on_song(EngineSong(first, "Done In Time", "one line\nanother line", self.model_name, 9))
            raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError):
        Worker(generator_factory=lambda model: HalfWay(), poll_seconds=0).run_once()
    assert Song.objects.get(pk=1).status == Status.DONE and Song.objects.get(pk=1).title == "Done In Time"
    assert Song.objects.get(pk=2).status == Status.PENDING


def test_worker_with_missing_model_exits_with_an_error(tmp_path, caplog):
    assert Worker(str(tmp_path / "nowhere")).run(until_empty=True) == 1
    assert "nowhere" in caplog.text


def test_control_characters_are_removed_before_storing(make_song):
    class Result:
        id, title, lyrics, model, tokens, error = 5, "\x00Bad\x07 title", "line\x00 one\n\nline two\r", "m", 3, None

    make_song(5, status=Status.PENDING)
    claim = queue.claim_batch(1)
    queue.complete(claim, [Result()])
    song = Song.objects.get(pk=5)
    assert (song.title, song.lyrics) == ("Bad title", "line one\n\nline two")
