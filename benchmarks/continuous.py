"""Continuous batching across requests: what a visitor waits for a song asked for while the worker is busy.

Two ways a worker can take songs, on the same generator and the same arrivals:
- `running`: one running batch whose free rows take new songs at the next step (`Generator.run` with a
  feed, the worker since issue 7's session 9);
- `batch after batch`: a batch is claimed, written to its end, then the next is claimed (the worker
  before it): a song asked for mid-batch waits for the batch's longest song.

A steady supply of pool IDs keeps the rows busy, as a worker refilling the pool is, for --seconds;
visitors' IDs arrive at random (Poisson, --rate a second) in that time and go before pool IDs, as the
queue orders them. Reported: each visitor's wait from asking to its song's first token and to its
end (p50, p90, max), songs/min and row utilisation of the whole run; the policies alternate, --repeats
times each, and the plot is the distribution of the wait to the end.

    .venv/bin/python benchmarks/continuous.py            # bundled model, appends to benchmarks/RESULTS.md
    .venv/bin/python benchmarks/continuous.py --quick --no-append
"""

import argparse
import datetime as dt
import itertools
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from generation import engine_version, machine

from billionsongs.model.generate import Generator
from billionsongs.model.loading import BUNDLED_MODEL_DIR

POLICIES = ("running", "batch after batch")
POOL_IDS = 10**15  # pool songs are numbered from here, visitors' from 0: the two never meet


@dataclass
class Run:
    policy: str
    waits_first: list[float] = field(default_factory=list)
    waits_end: list[float] = field(default_factory=list)
    songs: int = 0
    seconds: float = 0.0
    utilisation: float = 0.0


def simulate(gen: Generator, policy: str, arrivals: list[tuple[float, int]], seconds: float, batch: int) -> Run:
    """Write pool songs for `seconds` while visitors' songs arrive at their times; visitors go first."""
    start = time.perf_counter()
    future, waiting = deque(arrivals), deque()
    asked = {song_id: at for at, song_id in arrivals}
    pool_ids = itertools.count(POOL_IDS)
    first, end = {}, {}
    steps, rows = gen.stats.row_steps, gen.stats.batch_rows
    run = Run(policy)

    def now() -> float:
        return time.perf_counter() - start

    def hand_out(free: int) -> list[int]:
        while future and future[0][0] <= now():
            waiting.append(future.popleft()[1])
        out = [waiting.popleft() for _ in range(min(free, len(waiting)))]
        if now() < seconds:
            out += [next(pool_ids) for _ in range(free - len(out))]
        return out

    def on_token(song_id: int, token: int) -> None:
        if song_id in asked and song_id not in first:
            first[song_id] = now()

    def on_song(song) -> None:
        end[song.id] = now()
        run.songs += 1

    if policy == "running":
        gen.run(hand_out, batch, on_token, on_song)
    else:
        while now() < seconds or waiting or future:
            claimed = [hand_out(batch)]
            gen.run(lambda free, claimed=claimed: claimed.pop() if claimed else [], batch, on_token, on_song)
    run.seconds = now()
    run.waits_first = [first.get(i, end[i]) - at for i, at in asked.items()]
    run.waits_end = [end[i] - at for i, at in asked.items()]
    run.utilisation = (gen.stats.row_steps - steps) / max(1, gen.stats.batch_rows - rows)
    return run


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def report(runs: list[Run], args: argparse.Namespace, gen: Generator, command: str) -> str:
    lines = [f"## Continuous batching across requests, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC", "",
             f"- command: `{command}`", f"- machine: {machine()}", f"- engine: {engine_version()}",
             f"- model: {gen.model_name} ({gen.precision.name}), batch {args.batch}, pool songs for {args.seconds:g} s "
             f"per run, visitors' songs arriving at {args.rate:g}/s (Poisson), each policy {args.repeats}x, "
             "alternating; waits pooled over the runs", *([f"- note: {args.note}"] if args.note else []), "",
             "| policy | visitors' songs | wait to first token p50 · p90 · max s | wait to the end p50 · p90 · max s "
             "| songs/min | row utilisation |", "|---|---|---|---|---|---|"]
    for policy in POLICIES:
        mine = [r for r in runs if r.policy == policy]
        first = [w for r in mine for w in r.waits_first]
        end = [w for r in mine for w in r.waits_end]
        per_min = 60 * sum(r.songs for r in mine) / sum(r.seconds for r in mine)
        use = sum(r.utilisation for r in mine) / len(mine)
        lines.append(f"| {policy} | {len(end)} | {quantile(first, .5):.2f} · {quantile(first, .9):.2f} · "
                     f"{max(first):.2f} | {quantile(end, .5):.2f} · {quantile(end, .9):.2f} · {max(end):.2f} | "
                     f"{per_min:,.0f} | {use:.0%} |")
    running = [w for r in runs if r.policy == POLICIES[0] for w in r.waits_end]
    batched = [w for r in runs if r.policy == POLICIES[1] for w in r.waits_end]
    ran, batch = quantile(running, .5), quantile(batched, .5)
    lines += ["", f"- median wait to the end: running batch {ran:.2f} s against {batch:.2f} s batch after batch "
              f"({batch / max(1e-9, ran):.2f}x; a full running batch writes each song more slowly than a batch's "
              "emptying tail does)", ""]
    return "\n".join(lines)


def plot(runs: list[Run], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for policy in POLICIES:
        waits = sorted(w for r in runs if r.policy == policy for w in r.waits_end)
        ax.step(waits, [(i + 1) / len(waits) for i in range(len(waits))], where="post", label=policy)
    ax.set_xlabel("seconds from asking to the finished song")
    ax.set_ylabel("share of visitors' songs")
    ax.set_title("Songs asked for while the worker is busy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(BUNDLED_MODEL_DIR), help="model folder (default: the bundled model)")
    parser.add_argument("--dtype", default=None, help="precision (default: the engine's auto choice)")
    parser.add_argument("--batch", type=int, default=16, help="rows of the batch (default 16, the worker's)")
    parser.add_argument("--seconds", type=float, default=60, help="seconds of pool songs per run (default 60)")
    parser.add_argument("--rate", type=float, default=1.0, help="visitors' songs asked for per second (default 1)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each policy, alternating (default 2)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the arrival times (the same for every run)")
    parser.add_argument("--quick", action="store_true", help="3 s runs, once each: a smoke test of the benchmark")
    parser.add_argument("--note", default="", help="free text recorded with the results (e.g. what else was running)")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("RESULTS.md"),
                        help="Markdown file the report is appended to")
    parser.add_argument("--no-append", action="store_true", help="print the report only; leave --results untouched")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG of the waits (default: continuous.png beside --results; none with --no-append)")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.repeats = 3.0, 1
    rng = random.Random(args.seed)
    arrivals, at = [], rng.expovariate(args.rate)
    while at < args.seconds:
        arrivals.append((at, len(arrivals)))
        at += rng.expovariate(args.rate)
    if not arrivals:
        parser.error("no visitor arrives in that time: raise --rate or --seconds")
    gen = Generator(args.model, dtype=args.dtype)
    gen.generate(range(POOL_IDS - args.batch, POOL_IDS), batch_size=args.batch)  # warm-up: kernels compiled
    runs = []
    for repeat in range(args.repeats):
        for policy in POLICIES if repeat % 2 == 0 else POLICIES[::-1]:
            runs.append(simulate(gen, policy, arrivals, args.seconds, args.batch))
            print(f"  {policy}: {runs[-1].songs} songs in {runs[-1].seconds:.1f} s", file=sys.stderr)
    text = report(runs, args, gen, " ".join(["benchmarks/continuous.py", *sys.argv[1:]]))
    print(text)
    if not args.no_append:
        with args.results.open("a") as out:
            out.write("\n" + text)
        plot(runs, args.plot or args.results.with_name("continuous.png"))
    elif args.plot:
        plot(runs, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
