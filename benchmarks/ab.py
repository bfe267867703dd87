"""Old engine against new: the same songs timed by two versions of `src/`, alternating in separate processes.

Why: a change worth a few percent is invisible across two benchmark runs on these noisy 2-vCPU machines
(the memory bandwidth alone drifts by a third within minutes). Timing an old and a new engine in turns, each
in a fresh process, and reading the ratio within each pair is what shows it. Each process writes fixed-length
songs with `generation.py`'s `time_ours` (best of `--repeats` after a warm-up) and reports a hash of song 0's
tokens, so the report also says whether the change kept that song the same (a quick check, not a proof: the
batch-invariance tests and a full comparison of songs are).

    .venv/bin/python benchmarks/ab.py --old HEAD --note 'what changed'   # working tree against HEAD
    .venv/bin/python benchmarks/ab.py --quick --no-append                # smoke run, about a minute
"""

import argparse
import datetime as dt
import hashlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
from io import BytesIO
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--old", default="HEAD", help="git revision of the old engine (default HEAD)")
    parser.add_argument("--new", default=None,
                        help="git revision of the new engine (default: the working tree as it is)")
    parser.add_argument("--batches", default="32,64", help="comma-separated batch sizes (default 32,64)")
    parser.add_argument("--dtypes", default="bfloat16,int8",
                        help="comma-separated precisions, float32/bfloat16/int8 (default bfloat16,int8)")
    parser.add_argument("--new-tokens", type=int, default=256, help="tokens every song gets (default 256)")
    parser.add_argument("--pairs", type=int, default=3, help="old/new pairs per measurement (default 3); "
                        "the order alternates, old first in odd pairs")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per process, best counts (default 2)")
    parser.add_argument("--model", default="gpt2-124m",
                        help="'gpt2-124m' (GPT-2 124M's shapes, random weights; default), 'tiny' (the test "
                             "fixture's model) or a GPT-2-format folder")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny model, batch 4, 16 tokens, fp32, 1 pair, 1 repeat")
    parser.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="Markdown file appended to")
    parser.add_argument("--no-append", action="store_true", help="print the report only")
    parser.add_argument("--note", default="", help="what changed between the two engines, recorded with the results")
    parser.add_argument("--child", nargs=4, metavar=("MODEL", "DTYPE", "BATCH", "TOKENS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.batches, args.dtypes, args.new_tokens, args.pairs, args.repeats = (
            "tiny", "4", "float32", 16, 1, 1)
    return args


def child(model: str, dtype: str, batch: int, tokens: int, repeats: int) -> None:
    """In a fresh process whose `billionsongs` is the engine under test: time it, print one JSON line."""
    import generation

    import billionsongs
    from billionsongs.model.generate import Generator

    gen = Generator(model, dtype=dtype, max_tokens=tokens)
    generation.time_ours(gen, batch, tokens)  # warm-up: kernels compiled, caches grown, pages touched
    best, song0 = float("inf"), ()
    for _ in range(repeats):
        seconds, song0 = generation.time_ours(gen, batch, tokens)
        best = min(best, seconds)
    digest = hashlib.sha256(json.dumps(list(song0)).encode()).hexdigest()[:12]
    print(json.dumps({"ms_per_step": 1000 * best / tokens, "song0": digest, "engine": billionsongs.__file__,
                      "kernels": f"linear {gen.gpt.kernel_name}, attention {gen.gpt.attention_name}"}))


def extract(revision: str, into: Path) -> Path:
    """`src/` of `revision`, unpacked under `into`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision, "src"], capture_output=True, check=True)
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def short(revision: str) -> str:
    done = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", revision], capture_output=True, text=True)
    return done.stdout.strip() or revision


def prepare_model(name: str, workdir: Path) -> str:
    import generation

    if name == "gpt2-124m":
        return str(generation.build_gpt2_124m(workdir / "gpt2-124m"))
    if name == "tiny":
        return str(generation.build_tiny(workdir / "tiny", 256))
    return name


def run_one(src: Path, bench: Path, model: str, dtype: str, batch: int, args: argparse.Namespace) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src), str(bench)])}
    done = subprocess.run([sys.executable, str(bench / "ab.py"), "--repeats", str(args.repeats),
                           "--child", model, dtype, str(batch), str(args.new_tokens)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"the engine in {src} failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not Path(result["engine"]).is_relative_to(src):  # e.g. the installed tree, found first
        raise SystemExit(f"the process meant to run {src} imported {result['engine']}")
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.child:
        model, dtype, batch, tokens = args.child
        child(model, dtype, int(batch), int(tokens), args.repeats)
        return
    from generation import engine_version, machine

    when = dt.datetime.now(dt.UTC)
    batches = [int(b) for b in args.batches.split(",")]
    dtypes = args.dtypes.split(",")
    new_label = short(args.new) if args.new else engine_version().removeprefix("git ")
    lines, ratios, same = [], {}, True
    with tempfile.TemporaryDirectory(prefix="ab-") as tmp:
        workdir = Path(tmp)
        # The working tree is copied too: edits made while the benchmark runs must not reach its processes.
        engines = {"old": extract(args.old, workdir / "old"),
                   "new": extract(args.new, workdir / "new") if args.new else
                   Path(shutil.copytree(ROOT / "src", workdir / "new" / "src"))}
        bench = workdir / "benchmarks"  # the timing code, also as it was at the start
        bench.mkdir()
        for name in ("ab.py", "generation.py", "llamacpp.py"):
            shutil.copy(HERE / name, bench)
        model = prepare_model(args.model, workdir)
        kernels = {}
        for dtype in dtypes:
            for batch in batches:
                for pair in range(1, args.pairs + 1):
                    order = ("old", "new") if pair % 2 else ("new", "old")
                    got = {side: run_one(engines[side], bench, model, dtype, batch, args) for side in order}
                    ratio = got["old"]["ms_per_step"] / got["new"]["ms_per_step"]
                    ratios.setdefault((dtype, batch), []).append(ratio)
                    equal = got["old"]["song0"] == got["new"]["song0"]
                    same &= equal
                    kernels[dtype] = {side: got[side]["kernels"] for side in got}
                    lines.append(f"| {dtype} | {batch} | {pair} | {got['old']['ms_per_step']:.1f} | "
                                 f"{got['new']['ms_per_step']:.1f} | {ratio:.2f}x | {'yes' if equal else 'NO'} |")
                    print(lines[-1], flush=True)
    summary = ", ".join(f"{dtype} batch {batch} {statistics.median(r):.2f}x" for (dtype, batch), r in ratios.items())
    report = "\n".join([
        f"## Engine A/B: {short(args.old)} against {new_label}, {when:%Y-%m-%d %H:%M} UTC", "",
        f"- command: `benchmarks/ab.py {shlex.join(argv if argv is not None else sys.argv[1:])}`",
        f"- machine: {machine()}",
        f"- note: {args.note or '(none)'}",
        f"- model: {args.model}; {args.new_tokens}-token songs, fixed length; best of {args.repeats} per process "
        "after a warm-up; old and new in separate processes, alternating",
        *(f"- kernels, {dtype}: old {k['old']}; new {k['new']}" for dtype, k in kernels.items()),
        f"- median old ÷ new (above 1: the new engine is faster): {summary}",
        f"- song 0 the same in both engines on every run: {'yes' if same else 'NO: the change alters songs'}", "",
        "| precision | batch | pair | old ms/step | new ms/step | old ÷ new | song 0 same |",
        "|---|---|---|---|---|---|---|", *lines, ""])
    print("\n" + report)
    if not args.no_append:
        with args.results.open("a") as f:
            f.write("\n" + report)
        print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
