"""Memory of the pregenerated pool at its default target (50,000 song IDs), for both backends.

- Redis backend: `MEMORY USAGE` of the pool hash (ID -> shows), filled through `RedisPool.add`.
- Database backend: the on-disk size of the PoolEntry table and its index in SQLite (dbstat), i.e.
  what the embedded pool costs; it holds no process memory beyond one query's result.
- For comparison, the same IDs as an in-process Python dict (tracemalloc), the original's approach
  (a .NET in-memory queue, about 50 MB).

Appends a line to benchmarks/RESULTS.md. Run: .venv/bin/python benchmarks/pool_memory.py [--ids 50000]
"""

import argparse
import datetime
import os
import platform
import secrets
import sqlite3
import sys
import tempfile
import tracemalloc
import uuid
from pathlib import Path

MAX_ID = 2**63 - 1


def redis_bytes(ids: list[int], url: str) -> int | None:
    import redis

    os.environ.setdefault("BILLIONSONGS_HOME", tempfile.mkdtemp())
    os.environ["BILLIONSONGS_REDIS_PREFIX"] = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ["REDIS_URL"] = url
    from billionsongs.web import setup_django

    setup_django()
    from billionsongs.web.songs.pool import RedisPool

    try:
        pool = RedisPool(redis.Redis.from_url(url, socket_connect_timeout=3))
        pool.clear()
        for start in range(0, len(ids), 5000):
            pool.add(ids[start:start + 5000])
        size = pool.client.memory_usage(pool.name, samples=0)
        pool.clear()
        return size
    except redis.RedisError as exc:
        print(f"redis: skipped ({exc})", file=sys.stderr)
        return None


def sqlite_bytes(ids: list[int]) -> int:
    with tempfile.TemporaryDirectory() as folder:
        db = sqlite3.connect(Path(folder) / "pool.sqlite3")
        # The PoolEntry table as Django creates it (song_id primary key, shows).
        db.execute('CREATE TABLE "songs_poolentry" ("song_id" bigint NOT NULL PRIMARY KEY, '
                   '"shows" integer unsigned NOT NULL)')
        db.executemany("INSERT INTO songs_poolentry VALUES (?, 0)", [(i,) for i in ids])
        db.commit()
        try:
            return db.execute("SELECT SUM(pgsize) FROM dbstat WHERE name LIKE '%poolentry%'").fetchone()[0]
        except sqlite3.OperationalError:  # SQLite built without dbstat: the whole file, minus one empty page
            pages = db.execute("PRAGMA page_count").fetchone()[0]
            return (pages - 1) * db.execute("PRAGMA page_size").fetchone()[0]


def python_bytes(count: int) -> int:
    tracemalloc.start()
    pool = {secrets.randbelow(MAX_ID + 1): 0 for _ in range(count)}
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del pool
    return size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=50_000)
    parser.add_argument("--redis", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--no-record", action="store_true", help="do not append to benchmarks/RESULTS.md")
    args = parser.parse_args()
    ids = [secrets.randbelow(MAX_ID + 1) for _ in range(args.ids)]
    results = {"redis": redis_bytes(ids, args.redis), "sqlite": sqlite_bytes(ids),
               "python_dict": python_bytes(args.ids)}
    mb = {k: (f"{v / 2**20:.2f} MiB" if v is not None else "n/a") for k, v in results.items()}
    line = (f"- {datetime.date.today()} · {platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs) · "
            f"`python benchmarks/pool_memory.py --ids {args.ids}` · pool of {args.ids:,} IDs: "
            f"Redis hash {mb['redis']} (MEMORY USAGE), SQLite table+index {mb['sqlite']} on disk, "
            f"in-process dict {mb['python_dict']} (tracemalloc); the original: ~50 MB")
    print(line)
    if not args.no_record:
        results_file = Path(__file__).with_name("RESULTS.md")
        if not results_file.exists():
            results_file.write_text("# Benchmark results\n\n")
        with results_file.open("a") as out:
            out.write(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
