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
