"""Generation throughput: our engine next to `transformers`' generate(), llama.cpp and the machine's ceiling.

Why one run: the 2-vCPU machine this project targets is noisy (other jobs, turbo, a shared host), so
absolute tokens/s drift by tens of percent between runs. Every number here is measured side by side,
interleaved repeat by repeat, and the report leads with ratios: ours ÷ generate() and ours ÷ ceiling.

What is measured (issue 2 "Measure and report", issue 7 Deliver 1 and 3):
- fixed-length songs (N new tokens for every row, end-of-text masked exactly as generate(min_new_tokens=N)
  masks it) for the fixture-size tiny model, a GPT-2 124M-shaped model with random weights, and any
  --model folder (the bundled model when it exists), at each batch size and dtype;
- the ceiling from an in-run probe: peak GEMM FLOP/s per dtype and memory read bandwidth, combined as a
  roofline: tokens/s <= min(peak / FLOP per token, batch * bandwidth / bytes read per step); and next to it
  the no-overlap ceiling, the linear layers at that roofline and then the cache read at that bandwidth;
- row utilisation for natural-length songs (each stops at its own end-of-text): what early finishers cost;
- llama.cpp (benchmarks/llamacpp.py) on the same weights exported to a bf16 GGUF (and f32 where the CPU has no
  bf16 arithmetic; its faster type counts), when `make llamacpp` built it: a native engine as the peer, next to
  generate() as the baseline.

    .venv/bin/python benchmarks/generation.py            # full run, appends to benchmarks/RESULTS.md
    .venv/bin/python benchmarks/generation.py --quick --no-append   # smoke run, under a minute
"""

import argparse
import datetime as dt
import importlib.util
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import llamacpp
import torch

import billionsongs.model.generate as engine

# The module, not its names: benchmarks/ab.py imports this file against older engines, which lack some of them.
from billionsongs.model import quantized
from billionsongs.model.generate import Generator
from billionsongs.model.linear import ONEDNN_PACKED, packed_kernel_available
from billionsongs.model.loading import BUNDLED_MODEL_DIR, EOT, load_model
from billionsongs.model.precision import native_bf16, resolve_precision, slow_reason

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Our engine's precisions (billionsongs.model.precision), by the dtype of their linear layers' weights.
# int8 keeps activations and the KV cache in bf16 (fp32 where bf16 is not native).
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}
SHORT = {"float32": "fp32", "bfloat16": "bf16", "int8": "int8"}
GREEDY_CHECK = 5  # tokens of llama.cpp's greedy output compared with transformers' before timing it


# ----------------------------------------------------------------------------------------------------------
# models


def build_tiny(folder: Path, n_positions: int) -> Path:
    """The test fixture's model (tests/conftest.py), with a longer context so long songs fit."""
    spec = importlib.util.spec_from_file_location("bench_conftest", ROOT / "tests" / "conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    return conftest.build_tiny_model(folder, n_positions=n_positions)


def build_gpt2_124m(folder: Path) -> Path:
    """GPT-2 124M's exact shapes with random weights: the real model's compute, no download.

    The tokenizer is byte-level with GPT-2's layout (50,257 ids, <|endoftext|> = 50256) but no merges:
    the benchmark never encodes text, it only needs every sampled id to exist and decode.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {ch: i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab |= {f"<unused{i}>": i for i in range(len(vocab), 50256)}
    vocab[EOT] = 50256
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOT])
    tokenizer.save(str(folder / "tokenizer.json"))
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(bos_token_id=50256, eos_token_id=50256)).save_pretrained(folder)
    return folder


@dataclass
class Shape:
    """What the ceiling needs to know about a model."""

    n_layer: int
    n_embd: int
    vocab: int
    n_positions: int
    eot: int

    @property
    def matmul_params(self) -> int:
        """Weights every token multiplies by: 12·d² per block plus the tied output projection."""
        return self.n_layer * 12 * self.n_embd**2 + self.vocab * self.n_embd

    def flops_per_token(self, context: int) -> float:
        """2 FLOP per weight, plus QKᵀ and AV over `context` cached positions (4·context·d per layer)."""
        return 2 * self.matmul_params + 4 * self.n_layer * context * self.n_embd

    def bytes_per_step(self, rows: int, context: int, weight_bytes: int, cache_bytes: int) -> float:
        """Bytes one decode step must read: all weights once, plus each row's keys and values."""
        return self.matmul_params * weight_bytes + rows * 2 * self.n_layer * context * self.n_embd * cache_bytes


def model_shape(folder: Path) -> Shape:
    loaded = load_model(str(folder))
    c = loaded.config
    return Shape(c.n_layer, c.n_embd, c.vocab_size, c.n_positions, loaded.eot_id)


# ----------------------------------------------------------------------------------------------------------
# the ceiling probe


def synchronizer(device: str) -> Callable[[], None]:
    """What waits for a device's queued work, so that a timer stops when the work is done."""
    return torch.cuda.synchronize if device == "cuda" else (lambda: None)


def best_seconds(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    fn()
    sync()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - start)
    return best


@dataclass
class Probe:
    """The machine's limits, measured now, in the same run as the engines they bound."""

    flops: dict[str, float]  # dtype name -> peak GEMM FLOP/s
    read_bw: float  # bytes/s, large tensor sum
    copy_bw: float  # bytes/s (read + write), large tensor copy


def run_probe(dtypes: list[str], device: str, quick: bool) -> Probe:
    """GEMM of GPT-2's MLP shape (2048×768 @ 768×3072) for peak FLOP/s, plain `@` or the engine's prepacked
    oneDNN kernel, whichever is faster (int8: `torch._int_mm` or the engine's prepacked oneDNN int8 matmul,
    whichever is faster, int32 sums, ops counted as FLOP); a 256 MiB sum/copy for bandwidth."""
    sync = synchronizer(device)
    flops = {}
    m, k, n = 2048, 768, 3072
    for name in dtypes:
        iters = 2 if quick else 10
        if name == "int8":
            a = torch.randint(-127, 128, (m, k), dtype=torch.int8, device=device)
            b = torch.randint(-127, 128, (n, k), dtype=torch.int8, device=device).t()
            seconds = best_seconds(lambda a=a, b=b, iters=iters: [torch._int_mm(a, b) for _ in range(iters)], 3, sync)
            if device == "cpu" and quantized.packed_int8_available():
                # As for bf16: the engine's prepacked kernel (quantized.py) counts where it is faster.
                w = quantized.pack_int8_weight(b.t().float())
                # the rows as the engine hands them: signed int8 or shifted to uint8
                rows = a if quantized.signed_rows(k) else a.to(torch.int16).add_(128).to(torch.uint8)
                seconds = min(seconds, best_seconds(
                    lambda rows=rows, w=w, iters=iters, sums=quantized.packed_int8_sums: [
                        sums(rows, w) for _ in range(iters)], 3, sync))
            flops[name] = 2 * m * k * n * iters / seconds
            continue
        a = torch.randn(m, k, device=device).to(DTYPES[name])
        b = torch.randn(k, n, device=device).to(DTYPES[name])
        seconds = best_seconds(lambda a=a, b=b, iters=iters: [a @ b for _ in range(iters)], 3, sync)
        if device == "cpu" and packed_kernel_available(DTYPES[name]):
            # The engine's own kernel can beat plain `@` (prepacked weights): the ceiling is the faster of both.
            w = ONEDNN_PACKED.pack(b.t().contiguous())
            seconds = min(seconds, best_seconds(
                lambda a=a, w=w, iters=iters: [ONEDNN_PACKED.apply(a, w, None) for _ in range(iters)], 3, sync))
        flops[name] = 2 * m * k * n * iters / seconds
    x = torch.ones((16 if quick else 64) * 2**20, device=device)  # float32
    y = torch.empty_like(x)
    read = best_seconds(x.sum, 5, sync)
    copy = best_seconds(lambda: y.copy_(x), 5, sync)
    size = x.numel() * x.element_size()
    return Probe(flops, size / read, 2 * size / copy)


def _mean_context(new_tokens: int) -> int:
    """Mean cached positions over a song of `new_tokens`."""
    return new_tokens // 2 + 1


def _cache_itemsize(dtype: str) -> int:
    """Bytes per cached key or value: int8 keeps its cache in the auto dtype."""
    return resolve_precision(dtype, warn=False).dtype.itemsize


def ceiling(shape: Shape, probe: Probe, dtype: str, rows: int, new_tokens: int) -> float:
    """Roofline tokens/s for decoding `new_tokens` per row: the lower of compute- and memory-bound."""
    context = _mean_context(new_tokens)
    compute = probe.flops[dtype] / shape.flops_per_token(context)
    step_bytes = shape.bytes_per_step(rows, context, DTYPES[dtype].itemsize, _cache_itemsize(dtype))
    return min(compute, rows * probe.read_bw / step_bytes)


def no_overlap_ceiling(shape: Shape, probe: Probe, dtype: str, rows: int, new_tokens: int) -> float:
    """Tokens/s if the linear layers ran at their own roofline and attention then read the cache at the
    probe's bandwidth, one after the other. Why next to `ceiling`: the roofline's min(compute, memory)
    assumes the cache is read while the matmuls compute. A step on the CPU does one, then the other, on the
    same cores (on the 2-vCPU Zen 5 one thread gets half the GEMM peak and half the read bandwidth, so there
    is no idle unit to overlap on), so at large batches this is the bound that step can actually meet.
    Attention's few FLOPs are left out: it is bound by the cache read."""
    weights = shape.bytes_per_step(rows, 0, DTYPES[dtype].itemsize, 0)
    linears = max(rows * 2 * shape.matmul_params / probe.flops[dtype], weights / probe.read_bw)
    cache = shape.bytes_per_step(rows, _mean_context(new_tokens), 0, _cache_itemsize(dtype))
    return rows / (linears + cache / probe.read_bw)


# ----------------------------------------------------------------------------------------------------------
# the engines


@contextmanager
def no_end_of_text(eot: int) -> Iterator[None]:
    """Mask end-of-text in our sampler, exactly what generate(min_new_tokens=N) does to its logits.

    Random-weight models end songs at random; masking makes every row do N steps in both engines, so the
    work compared is identical. The engine has no such option, so we wrap its `sample` for the duration.
    """
    original = engine.sample

    def sample(logits: torch.Tensor, u: torch.Tensor, settings) -> torch.Tensor:
        with torch.inference_mode():  # logits are an inference tensor; in-place needs this mode
            logits[:, eot] = -math.inf
        return original(logits, u, settings)

    engine.sample = sample
    try:
        yield
    finally:
        engine.sample = original


def time_ours(gen: Generator, rows: int, new_tokens: int) -> tuple[float, tuple[int, ...]]:
    """Seconds for one batch of `rows` songs of exactly `new_tokens` tokens each, and song 0's tokens
    (the same at every batch size if the engine is batch-invariant on this model and machine)."""
    before = gen.stats.tokens
    song0: list[int] = []
    start = time.perf_counter()
    with no_end_of_text(gen.loaded.eot_id):
        gen.generate(range(rows), batch_size=rows, on_token=lambda i, t: i == 0 and song0.append(t))
    seconds = time.perf_counter() - start
    if gen.stats.tokens - before != rows * new_tokens:
        raise RuntimeError(f"expected {rows * new_tokens} tokens, got {gen.stats.tokens - before}: "
                           "fixed-length forcing no longer works (did generate.py stop calling `sample`?)")
    return seconds, tuple(song0)


def time_linears(gen: Generator, rows: int, repeats: int) -> float:
    """Seconds for one decode step's linear layers alone at `rows` rows (the MLP's with its fused GELU):
    the engine's own kernel and packed weights, every layer in order (so weights stream from memory as in
    a real step), nothing else.
    Next to the whole step it says how much of the step is matmul and how much is everything around it."""
    gpt = gen.gpt
    sync = synchronizer(gpt.device.type)
    with torch.inference_mode():
        x = torch.randn(rows, gpt.config.n_embd, device=gpt.device).to(gpt.dtype)
        wide = gpt.layers[0]["c_fc"].gelu_to_next(x)  # the MLP's input to its projection, as made

        def step() -> None:
            for layer in gpt.layers:
                layer["c_attn"](x)
                layer["c_proj"](x)
                layer["c_fc"].gelu_to_next(x)
                layer["mlp_proj"](wide)
            gpt.lm_head(x)

        return best_seconds(step, repeats, sync)


def time_hf(model, eot: int, rows: int, new_tokens: int, device: str) -> float:
    """Seconds for transformers' own sampling loop on the same batch: the baseline issue 7 names."""
    ids = torch.full((rows, 1), eot, dtype=torch.long, device=device)
    sync = synchronizer(device)
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=True, top_k=40, top_p=1.0,
                             temperature=1.0, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=eot)
    sync()
    if out.shape != (rows, new_tokens + 1):
        raise RuntimeError(f"generate() returned shape {tuple(out.shape)}")
    return time.perf_counter() - start


@dataclass
class Row:
    """Best-of-repeats tokens/s for one model, device and batch size."""

    model: str
    device: str
    batch: int
    hf: float
    ours: dict[str, float] = field(default_factory=dict)  # dtype -> tokens/s
    ceiling: dict[str, float] = field(default_factory=dict)
    invariant: dict[str, bool] = field(default_factory=dict)  # dtype -> song 0 equals its batch-1 self
    llama: float | None = None  # llama.cpp's tokens/s in its faster GGUF type here; None where it did not run
    llama_type: str = ""  # that GGUF type ("bf16" or "f32")
    gemm: dict[str, float] = field(default_factory=dict)  # dtype -> seconds of one step's linear layers alone
    no_overlap: dict[str, float] = field(default_factory=dict)  # dtype -> `no_overlap_ceiling`


def llama_types() -> list[str]:
    """The GGUF types llama.cpp is timed in: bf16, and f32 too where the CPU has no bf16 arithmetic. There
    llama.cpp converts bf16 on every multiply, and f32 was 1.1-1.24x faster at batch 32-64 (bf16 still
    1.5x at batch 1, streaming half the bytes) on an AVX2 EPYC; the peer gets its faster type per batch."""
    return ["bf16"] if native_bf16() else ["bf16", "f32"]


def prepare_llama(folder: Path, hf, eot: int, workdir: Path, outtype: str) -> tuple[Path | None, str]:
    """Export `folder` to a GGUF of `outtype` and check llama.cpp's greedy tokens against transformers' (fp32).

    Returns the GGUF to time (None when llama.cpp cannot run on this model) and what happened, for the report.
    The check runs llama.cpp in a child process: a model it cannot handle aborts the process, not just a call.
    """
    try:
        gguf = llamacpp.export_gguf(folder, Path(tempfile.mkdtemp(dir=workdir)) / f"model-{outtype}.gguf", outtype)
        theirs = llamacpp.greedy_in_child(gguf, eot, GREEDY_CHECK, torch.get_num_threads())
    except Exception as exc:  # anything from gguf-py or llama.cpp: report it, time the other engines
        return None, f"not measured: {type(exc).__name__}: {exc}"
    want = llamacpp.hf_greedy(hf, eot, GREEDY_CHECK)
    agree = next((i for i, (a, b) in enumerate(zip(theirs, want, strict=True)) if a != b), GREEDY_CHECK)
    return gguf, (f"measured; greedy from end-of-text: the first {agree} of {GREEDY_CHECK} tokens equal "
                  f"transformers' fp32" + ("" if agree == GREEDY_CHECK else f" (llama.cpp {theirs}, "
                                                                             f"transformers {want})"))


def time_llama(gguf: Path, rows: int, new_tokens: int, eot: int) -> float:
    """Seconds for llama.cpp to write the same batch (top-k 40, end-of-text masked), with torch's threads."""
    return rows * new_tokens / llamacpp.tokens_per_second(gguf, rows, new_tokens, torch.get_num_threads(), eot)


def bench_model(name: str, folder: Path, args: argparse.Namespace, probes: dict[str, Probe],
                workdir: Path) -> tuple[list[Row], str]:
    """Rows for every device and batch size, and what became of llama.cpp on this model (for the report)."""
    from transformers import GPT2LMHeadModel

    shape = model_shape(folder)
    n = args.new_tokens
    if n >= shape.n_positions:
        print(f"skip {name}: --new-tokens {n} does not fit its context of {shape.n_positions}", file=sys.stderr)
        return [], f"not measured: --new-tokens {n} does not fit the context of {shape.n_positions}"
    rows = []
    llama_note = args.llama_unavailable or "not measured: no CPU run"
    for device in args.devices:
        hf = GPT2LMHeadModel.from_pretrained(folder).eval().to(device)
        # int8 linear layers are CPU-only (billionsongs.model.quantized); on a GPU our engine runs fp32 and bf16.
        gens = {d: Generator(str(folder), dtype=d, max_tokens=n, device=device)
                for d in args.dtypes if device == "cpu" or d != "int8"}
        for d, g in gens.items():
            chosen = f"linear {g.gpt.kernel_name}, attention {g.gpt.attention_name}"
            args.kernels.setdefault(SHORT[d], set()).add(chosen)
        ggufs: dict[str, Path] = {}  # GGUF type -> file; llama.cpp is built for the CPU only
        if device == "cpu" and not args.llama_unavailable:
            notes = []
            for outtype in llama_types():
                gguf, note = prepare_llama(folder, hf, shape.eot, workdir, outtype)
                notes.append(f"{outtype} {note}")
                if gguf:
                    ggufs[outtype] = gguf
            llama_note = ", ".join(notes)
            print(f"  {name}: llama.cpp {llama_note}", file=sys.stderr)
        reference: dict[str, tuple[int, ...]] = {}  # dtype -> song 0 at the first batch size
        for batch in args.batches:
            best = {"hf": math.inf} | dict.fromkeys(gens, math.inf)
            llama_best = dict.fromkeys(ggufs, math.inf)
            invariant = dict.fromkeys(gens, True)
            for _ in range(args.repeats):  # interleaved, so a noisy moment hits every engine alike
                best["hf"] = min(best["hf"], time_hf(hf, shape.eot, batch, n, device))
                for d, gen in gens.items():
                    seconds, song0 = time_ours(gen, batch, n)
                    best[d] = min(best[d], seconds)
                    invariant[d] &= reference.setdefault(d, song0) == song0
                for outtype, gguf in list(ggufs.items()):
                    try:
                        llama_best[outtype] = min(llama_best[outtype], time_llama(gguf, batch, n, shape.eot))
                    except RuntimeError as exc:  # reported; the other engines go on
                        del ggufs[outtype]
                        llama_note = f"{llama_note}; {outtype} then failed at batch {batch}: {exc}"
            tps = {k: batch * n / v for k, v in best.items()}
            hf_tps = tps.pop("hf")
            llama_tps = {t: batch * n / v for t, v in llama_best.items() if v < math.inf}  # inf: every repeat failed
            llama_type = max(llama_tps, key=llama_tps.get, default="")
            row = Row(name, device, batch, hf_tps, tps,
                      {d: ceiling(shape, probes[device], d, batch, n) for d in args.dtypes}, invariant,
                      llama_tps.get(llama_type), llama_type,
                      {d: time_linears(gen, batch, 2 if args.quick else 5) for d, gen in gens.items()},
                      {d: no_overlap_ceiling(shape, probes[device], d, batch, n) for d in args.dtypes})
            rows.append(row)
            print(f"  {name} {device} batch {batch}: generate() {row.hf:.0f} tok/s, "
                  + ", ".join(f"ours {SHORT[d]} {v:.0f}" for d, v in row.ours.items())
                  + "".join(f", llama.cpp {t} {v:.0f}" for t, v in llama_tps.items()), file=sys.stderr)
    return rows, llama_note


@dataclass
class Natural:
    """Our engine on songs that end at their own end-of-text."""

    model: str
    dtype: str
    songs: int
    batch: int
    seconds: float
    tokens: int
    utilisation: float
    too_long: int
    longest: int


def bench_natural(name: str, folder: Path, dtype: str, songs: int, batch: int, repeats: int) -> Natural:
    """Issue 2: rows that finish early leave the batch; what is left runs narrower. Measure how much.

    Best of `repeats` like the fixed-length runs: the first pass also pays one-time costs (kernel
    selection for each new row count as the batch shrinks), which a long-running server pays once.
    """
    gen = Generator(str(folder), dtype=dtype, device="cpu")
    s = None
    for _ in range(repeats):
        gen.stats = engine.GenerationStats()
        result = gen.generate(range(songs), batch_size=batch)
        s = gen.stats if s is None or gen.stats.seconds < s.seconds else s
    return Natural(name, dtype, songs, batch, s.seconds, s.tokens, s.row_utilisation,
                   sum(song.error == engine.TOO_LONG for song in result), max(song.tokens for song in result))


# ----------------------------------------------------------------------------------------------------------
# profile (--profile): where one decode step's time goes


def profile_generation(folder: Path, dtype: str, batch: int, tokens: int) -> str:
    """Top ops while our engine writes `batch` songs of `tokens` tokens, after one warm-up run.

    Goes through the public `generate` only, so it keeps working while the engine's internals change.
    """
    from torch.profiler import ProfilerActivity, profile

    gen = Generator(str(folder), dtype=dtype, max_tokens=tokens, device="cpu")
    time_ours(gen, batch, tokens)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds, _ = time_ours(gen, batch, tokens)
    top = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)
    return f"{1000 * seconds / tokens:.1f} ms/step under the profiler\n{top}"


# ----------------------------------------------------------------------------------------------------------
# reporting


def machine() -> str:
    info = {}
    out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout if shutil.which("lscpu") else ""
    for line in out.splitlines():
        key, _, value = line.partition(":")
        info[key.strip()] = value.strip()
    flags = set(info.get("Flags", "").split())
    isa = ", ".join(f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags) or "none listed"
    return (f"{info.get('Model name', platform.processor() or 'unknown CPU')}, {os.cpu_count()} CPUs "
            f"({isa}), torch {torch.__version__}, torch threads: {torch.get_num_threads()}")


def engine_version() -> str:
    """The commit measured, and whether the engine's files differ from it (results depend on exactly that)."""
    def git(*cmd: str) -> str:
        done = subprocess.run(["git", "-C", str(ROOT), *cmd], capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    sha = git("rev-parse", "--short", "HEAD") or "unknown (no git)"
    dirty = git("status", "--porcelain", "--", "src/billionsongs/model")
    return f"git {sha}" + (" + uncommitted changes in src/billionsongs/model" if dirty else "")


def cpu_jiffies() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat (0, 0 where absent)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    hz = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields) - idle) / hz, sum(fields) / hz


def others_share(start: tuple[float, float], own_start: float) -> float | None:
    """Share of the machine's CPU time that other processes used while we ran: the noise indicator."""
    busy, total = cpu_jiffies()
    if total <= start[1]:
        return None
    t = os.times()
    own = t.user + t.system + t.children_user + t.children_system - own_start
    return max(0.0, (busy - start[0] - own) / (total - start[1]))


def fmt(x: float) -> str:
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def table(rows: list[Row], dtypes: list[str], n: int) -> str:
    head = ["model", "device", "batch", "generate() fp32 tok/s"]
    for d in dtypes:
        head += [f"ours {SHORT[d]} tok/s", f"{SHORT[d]} ÷ generate()", f"{SHORT[d]} % of {SHORT[d]} ceiling"]
        if d == "int8" and "bfloat16" in dtypes:  # issue 7's target is a share of the bf16 ceiling
            head += ["int8 % of bf16 ceiling"]
    head += ["llama.cpp tok/s (GGUF type)", *(f"ours {SHORT[d]} ÷ llama.cpp" for d in dtypes)]
    head += [f"ceiling {'/'.join(SHORT[d] for d in dtypes)} tok/s", f"songs/min ({n} tok, ours best)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.model, r.device, str(r.batch), fmt(r.hf)]
        for d in dtypes:
            v = r.ours.get(d)
            cells += [fmt(v), f"{v / r.hf:.2f}×", f"{100 * v / r.ceiling[d]:.0f}%"] if v else ["n/a"] * 3
            if d == "int8" and "bfloat16" in dtypes:
                cells += [f"{100 * v / r.ceiling['bfloat16']:.0f}%" if v else "n/a"]
        cells += [f"{fmt(r.llama)} ({r.llama_type})" if r.llama else "n/a"]
        cells += [f"{r.ours[d] / r.llama:.2f}×" if r.llama and r.ours.get(d) else "n/a" for d in dtypes]
        best = max(r.ours.values(), default=0.0)
        cells += ["/".join(fmt(r.ceiling[d]) for d in dtypes), fmt(best / n * 60) if best else "n/a"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def step_table(rows: list[Row], dtypes: list[str]) -> str:
    """Where a step of ours goes: its linear layers alone (`time_linears`) and everything else."""
    head = ["model", "device", "batch"]
    for d in dtypes:
        head += [f"{SHORT[d]} ms/step", f"{SHORT[d]} linears ms", f"{SHORT[d]} rest ms",
                 f"{SHORT[d]} linears-only % of {SHORT[d]} ceiling", f"{SHORT[d]} no-overlap ceiling tok/s",
                 f"{SHORT[d]} % of it"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.model, r.device, str(r.batch)]
        for d in dtypes:
            if d not in r.ours:
                cells += ["n/a"] * 6
                continue
            step = r.batch / r.ours[d]
            cells += [f"{1000 * step:.1f}", f"{1000 * r.gemm[d]:.1f}", f"{1000 * (step - r.gemm[d]):.1f}",
                      f"{100 * r.batch / r.gemm[d] / r.ceiling[d]:.0f}%", fmt(r.no_overlap[d]),
                      f"{100 * r.ours[d] / r.no_overlap[d]:.0f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def invariance_summary(rows: list[Row]) -> str:
    broken = [f"{r.model} {SHORT[d]} batch {r.batch}" for r in rows for d, ok in r.invariant.items() if not ok]
    if broken:
        return "**song 0 changed with batch size** in " + ", ".join(broken)
    return ("song 0 of every model came out token-identical at every batch size, in every dtype "
            "(checked on each timed run)")


def natural_table(results: list[Natural]) -> str:
    head = "model | dtype | songs | batch | mean tokens | longest | too long | row utilisation | tok/s | songs/min"
    lines = [f"| {head} |", "|---" * (head.count("|") + 1) + "|"]
    for r in results:
        lines.append(f"| {r.model} | {SHORT[r.dtype]} | {r.songs} | {r.batch} | {r.tokens / r.songs:.0f} | "
                     f"{r.longest} | {r.too_long} | {100 * r.utilisation:.0f}% | {fmt(r.tokens / r.seconds)} | "
                     f"{fmt(r.songs / r.seconds * 60)} |")
    return "\n".join(lines)


def plot(rows: list[Row], dtypes: list[str], path: Path, n: int) -> None:
    """tokens/s against batch size per model: ours per dtype, generate(), llama.cpp, and the ceilings (dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys((r.model, r.device) for r in rows))
    fig, axes = plt.subplots(1, len(keys), figsize=(5.5 * len(keys), 4.2), squeeze=False)
    for ax, (model, device) in zip(axes[0], keys, strict=True):
        rs = [r for r in rows if (r.model, r.device) == (model, device)]
        xs = [r.batch for r in rs]
        ax.plot(xs, [r.hf for r in rs], "o-", color="gray", label="generate() fp32")
        for d, color in zip(dtypes, ("tab:blue", "tab:orange", "tab:red"), strict=False):
            if all(d in r.ours for r in rs):
                ax.plot(xs, [r.ours[d] for r in rs], "o-", color=color, label=f"ours {SHORT[d]}")
            ax.plot(xs, [r.ceiling[d] for r in rs], "--", color=color, alpha=0.6, label=f"ceiling {SHORT[d]}")
        if all(r.llama for r in rs):
            types = "/".join(dict.fromkeys(r.llama_type for r in rs))
            ax.plot(xs, [r.llama for r in rs], "s-", color="tab:green", label=f"llama.cpp ({types})")
        ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="tokens/s", xticks=xs,
               title=f"{model} ({device}), {n} new tokens")
        ax.set_xticklabels([str(x) for x in xs])
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batches", default="1,8,32,64", help="comma-separated batch sizes (default 1,8,32,64)")
    p.add_argument("--new-tokens", type=int, default=256,
                   help="tokens every song gets in the fixed-length runs (default 256; must be < the context)")
    p.add_argument("--dtypes", default="auto",
                   help="our engine's precisions, comma-separated from float32,bfloat16,int8, or auto (default): "
                        "float32 plus those this CPU runs in hardware (bf16: AVX512_BF16/AMX; int8: VNNI), since "
                        "emulated ones take 4-16x longer and bound nothing (int8 = int8 linear layers, the auto "
                        "dtype elsewhere; generate() is always fp32)")
    p.add_argument("--repeats", type=int, default=2, help="runs per measurement; the best counts (default 2)")
    p.add_argument("--model", action="append", default=[], metavar="PATH",
                   help="extra GPT-2-format folder to benchmark (repeatable); the bundled model is added when "
                        "it exists")
    p.add_argument("--no-gpt2", action="store_true", help="skip the GPT-2 124M-shaped random model")
    p.add_argument("--no-llama", action="store_true",
                   help="skip llama.cpp even when `make llamacpp` built it (it runs by default when installed)")
    p.add_argument("--natural-songs", type=int, default=64,
                   help="songs per model in the natural-length (row utilisation) run (default 64; 0 skips it)")
    p.add_argument("--natural-batch", type=int, default=32, help="batch size of that run (default 32)")
    p.add_argument("--profile", action="store_true",
                   help="also report torch.profiler's top ops of our engine writing 64-token songs at batch 1 "
                        "and 32 (GPT-2 124M shape), per dtype")
    p.add_argument("--quick", action="store_true",
                   help="smoke run in under a minute: tiny model only (128-token context), batch 1 and 8, "
                        "32 tokens, 8 natural songs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads (default: torch's own choice, one per core)")
    p.add_argument("--results", type=Path, default=HERE / "RESULTS.md", help="Markdown file the report is appended to")
    p.add_argument("--no-append", action="store_true", help="print the report only; leave --results untouched")
    p.add_argument("--plot", type=Path, default=None,
                   help="where to save the plot (default benchmarks/generation.png, none with --no-append)")
    p.add_argument("--note", default="", help="free text recorded with the results (e.g. what else was running)")
    args = p.parse_args(argv)
    args.argv = [Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)]
    if args.quick:
        args.batches, args.new_tokens, args.no_gpt2 = "1,8", 32, True
        args.natural_songs, args.natural_batch = 8, 8
    args.batches = [int(b) for b in args.batches.split(",")]
    args.skipped = {}  # dtype -> why auto left it out (report)
    if args.dtypes.strip() == "auto":
        args.dtypes = ["float32"]
        for d in ("bfloat16", "int8"):
            if reason := slow_reason(resolve_precision(d, warn=False)):
                args.skipped[d] = reason
            else:
                args.dtypes.append(d)
    else:
        args.dtypes = [d.strip() for d in args.dtypes.split(",")]
    if unknown := set(args.dtypes) - set(DTYPES):
        p.error(f"unknown dtype(s) {sorted(unknown)}; choose from {sorted(DTYPES)}")
    args.devices = ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]
    args.kernels = {}  # dtype -> the linear and attention implementations our engine chose, per model (report)
    # None when llama.cpp will run, else why not (in the report)
    args.llama_unavailable = "not measured: --no-llama" if args.no_llama else (
        None if (reason := llamacpp.unavailable()) is None else f"not measured: {reason}")
    if args.plot is None and not args.no_append:
        args.plot = HERE / "generation.png"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started, own = cpu_jiffies(), sum(os.times()[:4])
    load_before = os.getloadavg()[0]
    version = engine_version()  # now: the code imported is what is measured, even if the tree changes mid-run
    when = dt.datetime.now(dt.UTC)
    probes = {device: run_probe(args.dtypes, device, args.quick) for device in args.devices}
    rows: list[Row] = []
    naturals: list[Natural] = []
    llama_notes: dict[str, str] = {}  # model -> measured (and its greedy check) or why not
    with tempfile.TemporaryDirectory(prefix="bench-models-") as tmp:
        models = {"tiny (fixture)": build_tiny(Path(tmp) / "tiny", 128 if args.quick else 1024)}
        if not args.no_gpt2:
            models["GPT-2 124M shape"] = build_gpt2_124m(Path(tmp) / "gpt2")
        extra = [*args.model] if args.quick else [*args.model, *([str(BUNDLED_MODEL_DIR)]
                                                                 if BUNDLED_MODEL_DIR.is_dir() else [])]
        for path in dict.fromkeys(extra):
            models[Path(path).name if Path(path) != BUNDLED_MODEL_DIR else "bundled"] = Path(path)
        for name, folder in models.items():
            print(f"benchmarking {name} ...", file=sys.stderr)
            model_rows, llama_notes[name] = bench_model(name, folder, args, probes, Path(tmp))
            rows += model_rows
            if name != "GPT-2 124M shape" and args.natural_songs:  # random 50k-vocab weights rarely end a song
                naturals += [bench_natural(name, folder, d, args.natural_songs, args.natural_batch, args.repeats)
                             for d in args.dtypes]
        profiles = ""
        if args.profile and "GPT-2 124M shape" in models:
            k = min(64, args.new_tokens)
            profiles = "\n\n".join(
                f"#### profile: GPT-2 124M shape, {d}, batch {b}, {k} tokens per song\n\n```\n"
                + profile_generation(models["GPT-2 124M shape"], d, b, k) + "```"
                for d in args.dtypes for b in (1, 32))
    share = others_share(started, own)
    report = render(args, when, version, probes, rows, naturals, share, load_before, profiles, llama_notes)
    print(report)
    if not args.no_append:
        if not args.results.exists():
            args.results.write_text("# Benchmark results\n\nAppended by `make bench` (benchmarks/generation.py), "
                                    "newest last. Compare ratios within one run, not absolute numbers across runs.\n")
        with args.results.open("a", encoding="utf-8") as f:
            f.write("\n" + report + "\n")
        print(f"appended to {args.results}", file=sys.stderr)
    if args.plot and rows:
        plot(rows, args.dtypes, args.plot, args.new_tokens)
        print(f"plot saved to {args.plot}", file=sys.stderr)


def llama_summary(notes: dict[str, str], ran: bool) -> str:
    """One report line: which llama.cpp ran (`ran`: on some row), how, and per model whether it was measured
    or why not."""
    per_model = "; ".join(f"{model}: {note}" for model, note in notes.items())
    if not ran:
        return f"llama.cpp: {per_model}"
    try:
        from llama_cpp import __version__ as version
    except Exception:  # not installed or a broken build: the notes say which
        version = "not available"
    how = (f"llama-cpp-python {version}, GGUF exported from the same weights (matrices {' and '.join(llama_types())}, "
           "norms fp32; the faster type per batch counts), "
           f"{torch.get_num_threads()} threads, one llama_decode per step for the whole batch, top-k 40 by "
           "torch.topk as in our engine, end-of-text masked")
    return f"llama.cpp: {how}; {per_model}"


def render(args, when, version, probes, rows, naturals, share, load_before, profiles, llama_notes) -> str:
    cuda = (f"yes ({torch.cuda.get_device_name()}; our int8 is CPU-only, so its cells read n/a there)"
            if "cuda" in args.devices else "no (torch.cuda.is_available() is False)")
    busy = ("unknown" if share is None else
            f"{100 * share:.0f}% of all CPU time went to other processes during the run"
            + (" — a concurrent job shared the CPU, absolute numbers are depressed; compare ratios"
               if share > 0.1 else ""))
    probe_lines = [f"- ceiling probe ({dev}): " + ", ".join(f"{SHORT[d]} GEMM {p.flops[d] / 1e9:,.0f} GFLOP/s"
                                                            for d in args.dtypes)
                   + f", memory read {p.read_bw / 1e9:.1f} GB/s (copy {p.copy_bw / 1e9:.1f} GB/s)"
                   for dev, p in probes.items()]
    parts = [
        f"## Generation, {when:%Y-%m-%d %H:%M} UTC{' (quick)' if args.quick else ''}",
        "",
        f"- command: `{shlex.join(args.argv)}`",
        f"- machine: {machine()}; CUDA used: {cuda}",
        f"- engine: {version}; kernels chosen: "
        + ("; ".join(f"{d}: {' / '.join(sorted(k))}" for d, k in args.kernels.items()) or "none (no CPU run)"),
        f"- other load: {busy} (1-min load average {load_before:.1f} at start, {os.getloadavg()[0]:.1f} at end)",
        *probe_lines,
        *[f"- {SHORT[d]} not measured (--dtypes auto): {why}" for d, why in args.skipped.items()],
        *([f"- note: {args.note}"] if args.note else []),
        f"- fixed length: {args.new_tokens} new tokens per song (end-of-text masked in every engine), top-k 40, "
        f"best of {args.repeats}; ceiling = min(GEMM peak ÷ FLOP/token, batch × read bandwidth ÷ bytes/step)",
        f"- batch invariance: {invariance_summary(rows)}",
        f"- {llama_summary(llama_notes, any(r.llama for r in rows))}",
        "",
        table(rows, args.dtypes, args.new_tokens),
        "",
        "Where a step goes: our mean step (the whole song ÷ its tokens), the same step's linear layers timed "
        "alone at that batch (the engine's kernel and packed weights, weights streamed from memory as in a "
        "step), and the rest (attention over the cache, cache writes, layer norms, sampling, Python). "
        "'linears-only % of ceiling' is the most the engine could reach with the rest at zero. The "
        "no-overlap ceiling is the linears at their roofline plus the cache read at the probe's bandwidth, one "
        "after the other, as a CPU step runs them (the ceiling above assumes they overlap).",
        "",
        step_table(rows, args.dtypes),
    ]
    if naturals:
        parts += ["", f"Natural-length songs (each stops at its own end-of-text), batch {args.natural_batch}: row "
                  "utilisation is the share of row-slots doing useful work (finished rows leave the batch; the rest "
                  "run narrower).", "", natural_table(naturals)]
    if args.natural_songs and not BUNDLED_MODEL_DIR.is_dir():
        parts += ["", "The bundled model is not present (src/billionsongs/bundled_model), so its natural-length "
                      "row utilisation and songs/min are not measured; the tiny model's random weights give songs "
                      "of random length, a stand-in only."]
    if profiles:
        parts += ["", profiles]
    return "\n".join(parts)


if __name__ == "__main__":
    main()
