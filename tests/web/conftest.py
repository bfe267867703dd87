"""Fixtures for the website tests: songs in known states, users, and a clean cache per test."""

import pytest
from django.core.cache import cache

from billionsongs.web.songs.models import Song, Status

LYRICS = """I was walking home in the rain tonight
Every light in the city burning bright

Oh oh, take me home
Oh oh, take me home"""


@pytest.fixture(autouse=True)
def _clean_cache():
    """The Top chart is cached; each test starts without a stale one."""
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def make_song(db):
    def make(song_id: int = 42, *, title: str = "Walking Home", lyrics: str = LYRICS, status: str = Status.DONE,
             hidden: bool = False, **fields) -> Song:
        return Song.objects.create(id=song_id, title=title if status == Status.DONE else "",
                                   lyrics=lyrics if status == Status.DONE else "", model="tiny", status=status,
                                   hidden=hidden, **fields)
    return make


@pytest.fixture
def song(make_song) -> Song:
    return make_song()


@pytest.fixture
def make_user(db, django_user_model):
    def make(username: str = "alice", password: str = "correct horse battery staple"):
        return django_user_model.objects.create_user(username=username, password=password,
                                                     email=f"{username}@example.org")
    return make


@pytest.fixture
def user(make_user):
    return make_user()


@pytest.fixture
def watched_engine():
    """`watched_engine(token=..., song=..., step_seconds=...)` is a `generator_factory` for a Worker: the
    engine, calling `token(song_id, token_id)` after the worker's own token callback and `song(result)`
    after its song callback, each decoding step slowed by `step_seconds`. Tests watch (or act in) a
    running batch through it."""
    import time

    from billionsongs.model.generate import Generator

    def factory_for(token=None, song=None, step_seconds=0.0):
        def factory(model):
            generator = Generator(model)
            run, step = generator.run, generator.gpt.step

            def slow_step(*args):
                time.sleep(step_seconds)
                return step(*args)

            def watched_run(take, batch_size=16, on_token=None, on_song=None):
                def tokens(song_id, token_id):
                    on_token(song_id, token_id)
                    if token:
                        token(song_id, token_id)

                def songs(result):
                    on_song(result)
                    if song:
                        song(result)
                return run(take, batch_size=batch_size, on_token=tokens, on_song=songs)

            generator.run = watched_run
            if step_seconds:
                generator.gpt.step = slow_step
            return generator
        return factory
    return factory_for
