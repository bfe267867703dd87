"""Where a decode step's time goes, timed inside real steps: linears, attention, layer norms, sampling, ...

Why not torch.profiler: the hand-written kernels (fused attention, top-k, int8's GELU) are called through
Inductor's Python bindings, not as torch ops, so the profiler does not see them; and `generation.py`'s step
table times the linears alone, outside a step, where they meet a warmer cache. Here each part of the engine
is wrapped with a timer for one batch of fixed-length songs (after a warm-up batch), so the parts add up to
the step as it runs. The timers cost about a microsecond a call.

    .venv/bin/python benchmarks/step_parts.py --dtype bfloat16 --batch 64     # GPT-2 124M's shapes
    .venv/bin/python benchmarks/step_parts.py --quick                         # smoke run, seconds
"""

import argparse
import tempfile
import time
from collections import Counter
from pathlib import Path

import generation

import billionsongs.model.generate as engine
import billionsongs.model.gpt as gpt_module
from billionsongs.model.generate import Generator
from billionsongs.model.linear import PackedLinear


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtype", default="bfloat16", help="float32, bfloat16 or int8 (default bfloat16)")
    parser.add_argument("--batch", type=int, default=64, help="songs written together (default 64)")
    parser.add_argument("--new-tokens", type=int, default=256, help="tokens every song gets (default 256)")
    parser.add_argument("--quick", action="store_true", help="the test fixture's tiny model, batch 4, 16 tokens")
    return parser.parse_args(argv)


def timed(totals: Counter, name: str, fn):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[name] += time.perf_counter() - start

    return wrapper


def measure(gen: Generator, batch: int, new_tokens: int) -> tuple[float, Counter]:
    """Seconds for one batch, and the seconds each wrapped part took in it."""
    totals: Counter = Counter()
    gpt = gen.gpt
    gpt.attend = timed(totals, "attention (cache writes included)", gpt.attend)
    gpt.step = timed(totals, "whole forward pass", gpt.step)
    for method in ("__call__", "gelu", "gelu_to_next"):
        setattr(PackedLinear, method, timed(totals, "linear layers", getattr(PackedLinear, method)))
    gpt_module.F.layer_norm = timed(totals, "layer norms", gpt_module.F.layer_norm)
    engine.sample = timed(totals, "sampling (top-k included)", engine.sample)
    engine.uniforms = timed(totals, "random draws", engine.uniforms)
    gen._mask_chants = timed(totals, "chant guard", gen._mask_chants)
    generation.time_ours(gen, batch, new_tokens)  # warm-up
    totals.clear()
    start = time.perf_counter()
    generation.time_ours(gen, batch, new_tokens)
    return time.perf_counter() - start, totals


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.quick:
        args.batch, args.new_tokens = 4, 16
    with tempfile.TemporaryDirectory() as tmp:
        folder = (generation.build_tiny(Path(tmp) / "tiny", 64) if args.quick
                  else generation.build_gpt2_124m(Path(tmp) / "gpt2-124m"))
        gen = Generator(str(folder), dtype=args.dtype, max_tokens=args.new_tokens)
        seconds, totals = measure(gen, args.batch, args.new_tokens)
    steps = args.new_tokens
    model = "tiny (fixture)" if args.quick else "GPT-2 124M shape"
    print(f"{model}, {args.dtype}, batch {args.batch}, {steps}-token songs: {1000 * seconds / steps:.1f} ms a step "
          f"(linear {gen.gpt.kernel_name}, attention {gen.gpt.attention_name}; {generation.machine()})\n")
    print("| part | ms/step | share of the step |\n|---|---|---|")
    for name, part in totals.most_common():
        print(f"| {name} | {1000 * part / steps:.2f} | {part / seconds:.0%} |")
    inside = totals["whole forward pass"] - totals["attention (cache writes included)"] - totals["linear layers"] \
        - totals["layer norms"]
    print(f"| rest of the forward pass (embeddings, adds, padding, Python) | {1000 * inside / steps:.2f} | "
          f"{inside / seconds:.0%} |")


if __name__ == "__main__":
    main()
