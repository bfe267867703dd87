"""Web serving: the site's hot pages under the production server, next to its yardsticks, in one run.

What is measured (issue 7 Deliver 1 and 3), with Debian's `wrk` against `billionsongs serve` (granian,
WSGI) on this machine, each at concurrency 1, 16 and 64:
- a static file, served by granian itself from the collected static folder: the server's ceiling;
- `/probe/cached/`, a minimal Django view behind `cache_page` with a 4 KB body (webprobe/urls.py): the
  fastest any Django page can be on this server;
- the page of a stored song, the random-song redirect, and the vote widget (anonymous);
- the song page again at concurrency 16 while a live-writing stream (SSE) is held open.

The report leads with ratios measured side by side: song page ÷ probe, and p99 at concurrency 16 with a
stream open. wrk shares the 2 vCPUs with the server, as in the issue's reference numbers.

    .venv/bin/python benchmarks/web.py                          # appends to benchmarks/RESULTS.md, web.png
    .venv/bin/python benchmarks/web.py --quick --no-append      # smoke run, about a minute
"""

import argparse
import datetime as dt
import http.client
import os
import platform
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SONG_ID = 7
STREAM_ID = 999_999
POOL_SONGS = 2000
TARGET_SHARE_OF_PROBE = 0.8
TARGET_P99_MS = 20.0


@dataclass
class Result:
    """One wrk run."""

    name: str
    concurrency: int
    rps: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int
    note: str = ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


def parse_wrk(output: str) -> tuple[float, float, float, float, int]:
    """requests/s, p50, p99 and max ms, and non-2xx/3xx plus socket errors, from `wrk --latency` output.

    wrk corrects its percentiles for coordinated omission: a stall of S ms on a connection that averages
    one response per I ms is counted as S/I late requests, not one. So one 250 ms pause (a garbage
    collection, say) in a 10 s run at c=1 shows as a p99 over 100 ms; the max says which it was."""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    longest = _ms(re.search(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)", output, re.M).group(1))
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", output))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return rps, p50, p99, longest, errors


def run_wrk(url: str, concurrency: int, seconds: float) -> tuple[float, float, float, float, int]:
    threads = min(2, concurrency)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds:g}s", "--latency", url]
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return parse_wrk(output)


class LiveStream(threading.Thread):
    """Holds `/song/<id>/stream/` open (reconnecting after each 20 s response), as a reader's tab does."""

    def __init__(self, host: str, port: int, path: str):
        super().__init__(daemon=True)
        self.host, self.port, self.path = host, port, path
        self.stop = threading.Event()
        self.connected = threading.Event()
        self.events = 0
        self.responses: list[int] = []

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                conn.request("GET", self.path, headers={"Accept": "text/event-stream"})
                response = conn.getresponse()
                self.responses.append(response.status)
                if response.status != 200:
                    return
                self.connected.set()
                while not self.stop.is_set():
                    line = response.fp.readline()
                    if not line:
                        break
                    self.events += line.startswith(b"event:") or line.startswith(b"data:")
            finally:
                conn.close()


def prepare_site(home: Path, env: dict) -> None:
    """Migrate, and store songs written by the bundled model: one to read, a pool for random picks, and
    one pending song for the live stream. Runs in a child so this process stays free of Django."""
    script = f"""
import django
django.setup()
from django.core.management import call_command
call_command("migrate", interactive=False, verbosity=0)
from billionsongs.model.generate import Generator
from billionsongs.web.songs.models import Song, Status
from billionsongs.web.songs.pool import get_pool
song = Generator().generate([{SONG_ID}])[0]
assert not song.error, song.error
rows = [Song(id=i, title=song.title, lyrics=song.lyrics, model=song.model, tokens=song.tokens, status=Status.DONE)
        for i in [{SONG_ID}, *range(10_000, 10_000 + {POOL_SONGS})]]
Song.objects.bulk_create(rows)
get_pool().add([r.id for r in rows[1:]])
Song.objects.create(id={STREAM_ID}, status=Status.PENDING)
"""
    subprocess.run([sys.executable, "-c", script], env=env, check=True)


def start_server(env: dict, port: int, args: argparse.Namespace, home: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "billionsongs", "serve", "--port", str(port), "--no-worker"]
    if args.processes:
        command += ["--processes", str(args.processes)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    log = open(home / "serve.log", "w")  # noqa: SIM115 (the server's lifetime; closed with the folder)
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/top/", timeout=5).read()
            return process
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.3)
    process.kill()
    raise RuntimeError(f"billionsongs serve did not start:\n{(home / 'serve.log').read_text()}")


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return f"{model}, {os.cpu_count()} vCPUs, Linux {platform.release()}, Python {platform.python_version()}"


def versions() -> str:
    from importlib.metadata import version

    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout.split(" Copyright")[0]
    return f"Django {version('django')}, granian {version('granian')}, {wrk.strip()}"


def table(results: list[Result], levels: list[int]) -> str:
    names = list(dict.fromkeys(r.name for r in results))
    by = {(r.name, r.concurrency): r for r in results}
    head = "| page | " + " | ".join(f"c={c}: req/s · p50 · p99 · max ms" for c in levels) + " |"
    lines = [head, "|---|" + "---|" * len(levels)]
    for name in names:
        cells = []
        for c in levels:
            r = by.get((name, c))
            cells.append("" if r is None else f"{r.rps:,.0f} · {r.p50_ms:.1f} · {r.p99_ms:.1f} · {r.max_ms:.0f}"
                         + (f" ({r.errors} errors)" if r.errors else ""))
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[Result], levels: list[int], path: Path, server: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r.name for r in results if r.note != "stream"))
    by = {(r.name, r.concurrency): r for r in results}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    width = 0.8 / len(levels)
    for i, c in enumerate(levels):
        values = [by[(n, c)].rps if (n, c) in by else 0 for n in names]
        ax.bar([k + i * width for k in range(len(names))], values, width, label=f"concurrency {c}")
    ax.set_xticks([k + width * (len(levels) - 1) / 2 for k in range(len(names))], names, rotation=12, fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("requests/s (log)")
    ax.set_title(f"{server} under wrk, same run")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=10, help="seconds per wrk run (default 10)")
    p.add_argument("--concurrency", default="1,16,64", help="comma-separated connection counts (default 1,16,64)")
    p.add_argument("--processes", type=int, default=None,
                   help="granian worker processes (default: what `serve` picks, one per core)")
    p.add_argument("--threads", type=int, default=None,
                   help="granian blocking threads per process (default: what `serve` picks)")
    p.add_argument("--quick", action="store_true", help="2 s runs: a smoke test of the benchmark itself")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="Markdown file the report is appended to")
    p.add_argument("--no-append", action="store_true", help="print the report only; leave --results untouched")
    p.add_argument("--plot", type=Path, default=None, help="PNG of requests/s per page (default: web.png beside "
                                                          "--results; none with --no-append)")
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. what else was running)")
    args = p.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",")]
    if args.quick:
        args.duration = 2
    if args.plot is None and not args.no_append:
        args.plot = args.results.parent / "web.png"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        sys.exit("benchmarks/web.py needs wrk: `make bench` installs Debian's package, or apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="billionsongs-web-bench-") as tmp:
        home = Path(tmp)
        env = {**os.environ, "BILLIONSONGS_HOME": str(home), "DJANGO_SETTINGS_MODULE": "webprobe.settings",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
               # Every pooled song may be shown without limit: the run must not drain the pool into new IDs.
               "BILLIONSONGS_POOL_MAX_SHOWS": str(10**9)}
        for name in ("DEBUG", "BILLIONSONGS_QUEUE", "DATABASE_URL"):
            env.pop(name, None)
        prepare_site(home, env)
        port = free_port()
        server = start_server(env, port, args, home)
        base = f"http://127.0.0.1:{port}"
        pages = {
            "static file (granian)": "/static/billionsongs/site.css",
            "cache_page probe": "/probe/cached/",
            "stored song page": f"/song/{SONG_ID}/",
            "random redirect": "/",
            "vote widget": f"/song/{SONG_ID}/votes/",
        }
        results: list[Result] = []
        started = dt.datetime.now(dt.UTC)
        try:
            for path in pages.values():
                urllib.request.urlopen(base + path, timeout=10).read()  # warm caches
            for c in args.levels:  # concurrency outermost: each level's pages are measured back to back
                for name, path in pages.items():
                    r = Result(name, c, *run_wrk(base + path, c, args.duration))
                    results.append(r)
                    print(f"  c={c} {name}: {r.rps:,.0f} req/s, p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms",
                          file=sys.stderr)
            stream = LiveStream("127.0.0.1", port, f"/song/{STREAM_ID}/stream/")
            stream.start()
            if not stream.connected.wait(10):
                raise RuntimeError(f"the live stream did not open: responses {stream.responses}")
            try:
                r = Result("stored song page, stream open", 16,
                           *run_wrk(base + pages["stored song page"], 16, args.duration), note="stream")
            finally:
                stream.stop.set()
            results.append(r)
            print(f"  c=16 song page with a stream open: {r.rps:,.0f} req/s, p99 {r.p99_ms:.2f} ms", file=sys.stderr)
        finally:
            server.terminate()
            server.wait(30)
    report = render(args, started, results, stream.events)
    print(report)
    if args.plot:
        plot(results, args.levels, args.plot, server_command(args))
    if not args.no_append:
        with args.results.open("a") as f:
            f.write("\n" + report)
        print(f"appended to {args.results}" + (f"; plot {args.plot}" if args.plot else ""), file=sys.stderr)


def server_command(args: argparse.Namespace) -> str:
    return ("billionsongs serve --no-worker" + (f" --processes {args.processes}" if args.processes else "")
            + (f" --threads {args.threads}" if args.threads else ""))


def render(args: argparse.Namespace, started: dt.datetime, results: list[Result], stream_events: int) -> str:
    by = {(r.name, r.concurrency): r for r in results}
    lines = [f"## Web serving, {started:%Y-%m-%d %H:%M} UTC", "",
             f"- Machine: {machine()}",
             f"- Software: {versions()}",
             f"- Command: `{shlex.join([Path(sys.executable).name, 'benchmarks/web.py', *sys.argv[1:]])}`",
             f"- Server: `{server_command(args)}"
             + "` (granian WSGI, one process per core unless given, SQLite, file cache); "
             f"wrk {args.duration:g} s per run on the same 2 vCPUs",
             ]
    if args.note:
        lines.append(f"- Note: {args.note}")
    lines += ["- Latency: wrk's percentiles, corrected for coordinated omission (one stall counts as every "
              "request it delayed), and the slowest single response", "", table(results, args.levels), ""]
    for c in args.levels:
        song, probe = by.get(("stored song page", c)), by.get(("cache_page probe", c))
        if song and probe:
            share = song.rps / probe.rps
            lines.append(f"- c={c}: song page {share:.0%} of the cache_page probe "
                         f"({'meets' if share >= TARGET_SHARE_OF_PROBE else 'below'} the 80% target); "
                         f"probe {probe.rps:,.0f} req/s")
    streamed = by.get(("stored song page, stream open", 16))
    if streamed:
        lines.append(f"- c=16 with a live stream open ({stream_events} SSE lines received): p99 "
                     f"{streamed.p99_ms:.1f} ms ({'meets' if streamed.p99_ms < TARGET_P99_MS else 'misses'} the "
                     f"{TARGET_P99_MS:g} ms target), {streamed.rps:,.0f} req/s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
