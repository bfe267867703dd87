"""The pregenerated pool: written songs that passed the quality gate, waiting to be shown.

As in the original: a target size (POOL_TARGET, default 50,000 IDs); each pooled song is shown at most
POOL_MAX_SHOWS times (default 10) and then leaves the pool, and workers write fresh songs to refill it;
at start up to POOL_START_SHARE (75%) of the target is loaded from songs already stored.

One interface, two backends:
- `DatabasePool` (embedded mode): the PoolEntry table. A random pick is an index seek on a random ID
  (song IDs are uniform random numbers, so "the first pooled ID at or after a random number" is a
  random pooled song), so it stays O(log n) at any size.
- `RedisPool` (scale-out): one Redis hash ID → shows; a pick is one Lua script (HRANDFIELD, HINCRBY,
  HDEL at the limit), atomic across every web process.
"""

import logging
import secrets

from django.conf import settings
from django.db.models import F

from billionsongs.ids import MAX_SONG_ID
from billionsongs.web.songs.models import PoolEntry, Song

log = logging.getLogger("billionsongs.pool")


class Pool:
    """Interface of both backends."""

    def add(self, ids: list[int]) -> int:
        """Put songs into the pool (already pooled ones keep their show count); returns how many were new."""
        raise NotImplementedError

    def take(self) -> int | None:
        """A random pooled song, counting one show (the song leaves the pool at the limit); None if empty."""
        raise NotImplementedError

    def remove(self, ids: list[int]) -> None:
        raise NotImplementedError

    def size(self) -> int:
        raise NotImplementedError

    def clear(self) -> None:
        raise NotImplementedError

    def deficit(self) -> int:
        return max(0, settings.POOL_TARGET - self.size())


class DatabasePool(Pool):
    def add(self, ids: list[int]) -> int:
        before = self.size()
        PoolEntry.objects.bulk_create([PoolEntry(song_id=i) for i in ids], ignore_conflicts=True)
        return self.size() - before

    def take(self) -> int | None:
        for _ in range(3):
            song_id = self._random_id()
            if song_id is None:
                return None
            # One write per pick: count the show, or remove the song on its last allowed show. Writers
            # are serialised, so concurrent picks count every show; a song whose entry is gone by the
            # time of the write (another pick's last show, or removed) is not shown: pick again.
            if PoolEntry.objects.filter(song_id=song_id, shows__lt=settings.POOL_MAX_SHOWS - 1).update(
                    shows=F("shows") + 1):
                return song_id
            if PoolEntry.objects.filter(song_id=song_id).delete()[0]:
                return song_id
        return None

    @staticmethod
    def _random_id() -> int | None:
        """The first pooled ID at or after a random number, wrapping around: two index seeks at most."""
        pooled = PoolEntry.objects.order_by("song_id").values_list("song_id", flat=True)
        song_id = pooled.filter(song_id__gte=secrets.randbelow(MAX_SONG_ID + 1)).first()
        return pooled.first() if song_id is None else song_id

    def remove(self, ids: list[int]) -> None:
        PoolEntry.objects.filter(song_id__in=ids).delete()

    def size(self) -> int:
        return PoolEntry.objects.count()

    def clear(self) -> None:
        PoolEntry.objects.all().delete()


_TAKE = """
local id = redis.call('HRANDFIELD', KEYS[1])
if not id then return false end
local shows = redis.call('HINCRBY', KEYS[1], id, 1)
if shows >= tonumber(ARGV[1]) then redis.call('HDEL', KEYS[1], id) end
return id
"""


class RedisPool(Pool):
    def __init__(self, client=None, name: str | None = None):
        from billionsongs.web.songs.backends import key, redis_client

        self.client = client or redis_client()
        self.name = name or key("pool")
        self._take = self.client.register_script(_TAKE)

    def add(self, ids: list[int]) -> int:
        pipe = self.client.pipeline(transaction=False)
        for song_id in ids:
            pipe.hsetnx(self.name, song_id, 0)
        return sum(pipe.execute()) if ids else 0

    def take(self) -> int | None:
        song_id = self._take(keys=[self.name], args=[settings.POOL_MAX_SHOWS])
        return int(song_id) if song_id is not None else None

    def remove(self, ids: list[int]) -> None:
        if ids:
            self.client.hdel(self.name, *ids)

    def size(self) -> int:
        return self.client.hlen(self.name)

    def clear(self) -> None:
        self.client.delete(self.name)


def get_pool() -> Pool:
    """The configured backend (BILLIONSONGS_POOL: "db", or "redis" by default in RQ mode)."""
    return RedisPool() if settings.POOL_BACKEND == "redis" else DatabasePool()


def candidates():
    """Stored songs that may be pooled: written, visible, passed the quality gate."""
    return Song.objects.visible().filter(quality="")


def warm(pool: Pool | None = None) -> int:
    """Fill the pool up to POOL_START_SHARE of its target from songs already stored; returns how many."""
    pool = pool or get_pool()
    want = int(settings.POOL_TARGET * settings.POOL_START_SHARE) - pool.size()
    if want <= 0:
        return 0
    ids = list(candidates().order_by("?").values_list("id", flat=True)[:want])
    added = pool.add(ids) if ids else 0
    if added:
        log.info("pool: loaded %d stored songs (target %d)", added, settings.POOL_TARGET)
    return added
