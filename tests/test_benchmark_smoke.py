"""Keeps benchmarks/generation.py from rotting: its quick mode must run and print its tables.

Timings are not asserted: this machine is shared and noisy, and speed is the benchmark's report, not a test.
"""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "generation.py"


def test_quick_benchmark_prints_tables(tmp_path):
    plot = tmp_path / "generation.png"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--no-append", "--plot", str(plot)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "| model | device | batch | generate() fp32 tok/s |" in out
    rows = [line for line in out.splitlines() if line.startswith("| tiny (fixture) | cpu |")]
    assert [row.split(" | ")[2] for row in rows] == ["1", "8"]
    assert "row utilisation" in out and "ceiling probe (cpu)" in out
    assert plot.stat().st_size > 0
