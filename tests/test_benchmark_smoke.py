"""Keeps the benchmarks from rotting: their quick modes must run and print their tables.

Timings are not asserted: this machine is shared and noisy, and speed is the benchmark's report, not a test.
"""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCHMARKS / "generation.py"


def test_quick_benchmark_prints_tables(tmp_path):
    plot = tmp_path / "generation.png"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-append", "--plot", str(plot)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| model | device | batch | generate() fp32 tok/s |" in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny (fixture) | cpu |")]
    assert [row.split(" | ")[2] for row in rows] == ["1", "8"] * 2  # throughput, then where a step goes
    assert "| model | device | batch | fp32 ms/step | fp32 linears ms |" in out
    assert "fp32 no-overlap ceiling tok/s | fp32 % of it |" in out
    assert "row utilisation" in out and "ceiling probe (cpu)" in out
    assert "token-identical at every batch size" in out
    assert plot.stat().st_size > 0


def test_web_benchmark_runs_against_the_real_server(on_ci):
    if not shutil.which("wrk"):
        if on_ci:
            pytest.fail("wrk missing on CI: `make test` installs Debian's wrk")
        pytest.skip("wrk not installed (make test installs it)")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "web.py"), "--no-append", "--duration", "1",
                           "--concurrency", "4"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {line.split(" | ")[0].lstrip("| ") for line in done.stdout.splitlines() if line.startswith("| ")}
    assert {"static file (granian)", "cache_page probe", "stored song page", "random redirect", "vote widget",
            "stored song page, stream open"} <= rows
    assert "errors)" not in done.stdout  # every response was a 2xx/3xx
    assert "SSE lines received" in done.stdout


def test_precision_quality_scores_every_precision(songdata_csv):
    done = subprocess.run([sys.executable, str(BENCHMARKS / "precision_quality.py"), "--no-append", "--csv",
                           str(songdata_csv), "--songs", "4", "--tokens", "16"], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ")[0].lstrip("| ") for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows[1:] == ["float32", "bfloat16", "int8"]


def test_continuous_batching_benchmark_compares_both_policies(tmp_path):
    plot = tmp_path / "continuous.png"
    done = subprocess.run([sys.executable, str(BENCHMARKS / "continuous.py"), "--quick", "--no-append",
                           "--plot", str(plot)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ")[0] for line in done.stdout.splitlines() if line.startswith("| ")]
    assert rows == ["| policy", "| running", "| batch after batch"]
    assert "wait to the end p50 · p90 · max s" in done.stdout and plot.stat().st_size > 0


def test_ab_benchmark_times_both_engines_and_compares_their_songs():
    if subprocess.run(["git", "-C", str(BENCHMARKS), "rev-parse", "HEAD"], capture_output=True).returncode:
        pytest.skip("not a git checkout: ab.py takes its engines from git revisions")
    done = subprocess.run([sys.executable, str(BENCHMARKS / "ab.py"), "--quick", "--no-append", "--old", "HEAD",
                           "--new", "HEAD"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line.split(" | ") for line in done.stdout.splitlines() if line.startswith("| float32 | 4 | 1 |")]
    assert len(rows) == 2  # printed as measured, then in the report
    assert float(rows[0][3]) > 0 and float(rows[0][4]) > 0
    assert "song 0 the same in both engines on every run: yes" in done.stdout


def test_step_parts_times_each_part_inside_real_steps():
    done = subprocess.run([sys.executable, str(BENCHMARKS / "step_parts.py"), "--quick"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    parts = {line.split(" | ")[0].lstrip("| ") for line in done.stdout.splitlines() if line.startswith("| ")}
    assert {"whole forward pass", "linear layers", "attention (cache writes included)", "layer norms",
            "sampling (top-k included)", "chant guard"} <= parts
