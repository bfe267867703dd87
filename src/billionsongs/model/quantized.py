"""Int8 linear layers (W8A8): int8 weights with one scale per output channel, each input row quantized
to int8 with its own scale, products summed in int32.

Why int8: a decode step streams every weight once, so at batch 1 it is bound by memory, and int8 halves
the bytes of bf16; batched, the CPU's int8 dot products (AVX512-VNNI) do twice the work per cycle of bf16.
Measured on the 2-vCPU Zen 4 for GPT-2 124M's layers (weights out of cache): 4.8 against 8.1 ms per step
at 1 row, 17 against 23 ms at 32 and 25 against 38 ms at 64; the whole engine then (before its glue was
compiled), 1.28x bf16 at batch 1 and 1.07x at 64 but 0.8-1.0x at 8-32, where the quantize/dequantize ops ate
the gain (benchmarks/RESULTS.md). On the Zen 5 with the glue compiled, 1.19x bf16 at batch 32 and 1.10x at 64.
The bundled model's validation perplexity went from 59.44 (bf16) to 59.48 (benchmarks/precision_quality.py).

Why it keeps songs batch-invariant by construction: an integer sum is exact, so whichever kernel the
backend picks for a batch height, and in whatever order it adds, row r's int32 result is the same; the
scales are per row and per column and applied elementwise. The one choice that could leak the batch
into a row, a scale shared by the rows, is exactly what per-row activation scales avoid.

Two kernels (`int8_kernels`, fastest first; `GPT2` keeps the first that passes the row-invariance probe):
the packed one, weights reordered once for our AVX512-VNNI kernel (`int8_rows`: every height on a CPU
without AMX, named `int8-vnni`) and for oneDNN's int8 matmul (the heights `int8_rows` leaves, or all of them
where it cannot run: `int8-onednn-packed`), and `int8-dynamic`, `torch._int_mm`, which runs wherever torch
does. They return the same bits, so which one a machine takes
never changes a song. Whole engine, GPT-2 124M shape, 64-128-token songs, on the 2-vCPU Zen 5 (family 26),
old and new alternating in separate processes: packed 1.3-1.45x `_int_mm` at batch 8, 1.15-1.2x at 32 and
1.0-1.06x at 64, where the quantize/dequantize ops around the matmul (7 ms of a 40 ms step under the
profiler) eat most of the matmul's gain. Those ops are now compiled (`prepare_glue`), with the same bits:
1.04-1.11x the int8 engine at batch 8-64 there.

What it trades: weights and activations are rounded to 8 bits, so songs differ from bf16's (like any
change of precision), and models with large activation outliers lose more than the bundled one does;
measure before serving another model in int8.
"""

import functools
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.export import Dim

from billionsongs.model import gelu_quantize, int8_rows
from billionsongs.model.inductor import compile_graph, why_not
from billionsongs.model.linear import LinearKernel
from billionsongs.model.precision import vnni

log = logging.getLogger(__name__)

LEVELS = 127  # symmetric: -127..127, so negating a value never overflows
# The widest row whose shifted sums (each product at most 255 * 127) all stay below 2^24, where float32 holds
# every integer: oneDNN's zero point then comes off exactly even where it does that in float32.
EXACT_SHIFTED_WIDTH = 2**24 // (255 * LEVELS)


@dataclass(frozen=True)
class QuantizedWeight:
    """`values` (out, in) int8 and `scale` (out,) float32: weight ≈ values · scale[:, None]."""

    values: torch.Tensor
    scale: torch.Tensor


@dataclass(frozen=True)
class QuantizedRows:
    """Activations already quantized as oneDNN's int8 matmul takes them here (`_quantized`): `values` (rows, n)
    int8, or uint8 holding each int8 value plus 128 (`signed_rows`), and `scale` (rows, 1) float32. What the
    MLP's GELU hands its second layer (`gelu_quantize.py`), so that layer does not quantize it again."""

    values: torch.Tensor
    scale: torch.Tensor


def quantize_weight(weight: torch.Tensor) -> QuantizedWeight:
    """Round an (out, in) weight to int8 with one scale per output channel (its largest magnitude ÷ 127)."""
    rounded, scale = _rounded_rows(weight)
    return QuantizedWeight(rounded.to(torch.int8), scale.squeeze(1))


def int8_linear(x: torch.Tensor, weight: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    """`x @ W.T + b` in int8 with int32 sums, returned in float32. Few, in-place ops: at batch 1 each
    extra tensor op costs about as much as a small layer's matmul does. One row goes to the backend as one
    row: its one-row kernel adds in another order, which exact sums make harmless (and it is faster)."""
    rounded, scale = _rounded_rows(x)
    sums = torch._int_mm(rounded.to(torch.int8), weight.values.t()).float()
    return _rescaled(sums, scale, weight.scale, bias)


def _rounded_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row of `x` divided by its own scale (its largest magnitude ÷ 127) and rounded, in float32,
    and the scales (rows, 1). Fewer passes gave the same bits but were slower: `vector_norm(x, inf)` on the
    bf16 input, a bf16 ÷ float32 division and the last op writing bf16 (no `.to(dtype)`) made the whole
    int8 engine 15-25% slower at batch 8-64 (GPT-2 124M shape, Zen 5, alternating processes)."""
    x32 = x.float()
    scale = x32.abs().amax(dim=-1, keepdim=True).clamp_min_(torch.finfo(torch.float32).tiny).div_(LEVELS)
    return (x32 / scale).round_(), scale  # not in place: x.float() is x itself in fp32


def _rescaled(sums: torch.Tensor, scale: torch.Tensor, weight_scale: torch.Tensor,
              bias: torch.Tensor | None) -> torch.Tensor:
    """Integer sums (as float32, rescaled in place) times the row and channel scales, plus the bias."""
    sums.mul_(scale).mul_(weight_scale)
    if bias is not None:
        sums += bias
    return sums


def _shifted_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`_rounded_rows` as oneDNN takes them on a VNNI CPU: int8 values shifted by 128, as uint8
    (`int8_linear_packed`)."""
    rounded, scale = _rounded_rows(x)
    return rounded.add_(128).to(torch.uint8), scale


def _signed_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`_rounded_rows` as int8, as oneDNN takes them where shifted rows are not exact (`signed_rows`)."""
    rounded, scale = _rounded_rows(x)
    return rounded.to(torch.int8), scale


def signed_rows(width: int) -> bool:
    """Are rows of `width` values handed to oneDNN as int8 here, rather than shifted to uint8? Only where
    the start-up check found shifted rows inexact (`_onednn_int8_input`), and only past
    `EXACT_SHIFTED_WIDTH`: narrower rows' sums are exact even in float32, and on the AMX Xeon oneDNN's
    signed kernel was 6-20x slower for some narrow layers (128 to 32 and 32 to 32 outputs; 1.0x for every
    layer of 520 inputs or more measured, GPT-2's and the bundled model's included)."""
    return width > EXACT_SHIFTED_WIDTH and _onednn_int8_input() == "signed"


# The glue around oneDNN's int8 matmul, compiled (`prepare_glue`). In eager mode it is ~13 tensor ops a layer
# (quantize the rows; rescale, add the bias, convert), each its own pass and dispatch: ~55 µs of a 315 µs
# 768x3072 layer at 32 rows on the 2-vCPU Zen 5. Compiled, it is two fused kernels with the same bits:
# every op is elementwise or an exact max, done in the same order (checked against the eager ops,
# `tests/test_linear.py`), so a machine that cannot compile falls back to eager without changing a song.


class _Quantize(torch.nn.Module):
    def __init__(self, signed: bool):
        super().__init__()
        self.signed = signed

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (_signed_rows if self.signed else _shifted_rows)(x)


class _Rescale(torch.nn.Module):
    """`_rescaled` and the conversion to `dtype`, written out of place so that export sees no mutation."""

    def __init__(self, dtype: torch.dtype, bias: bool):
        super().__init__()
        self.dtype, self.bias = dtype, bias

    def forward(self, sums: torch.Tensor, scale: torch.Tensor, weight_scale: torch.Tensor,
                bias: torch.Tensor) -> tuple[torch.Tensor]:
        out = sums * scale * weight_scale
        return ((out + bias) if self.bias else out).to(self.dtype),


# ("quantize", input dtype, signed) or ("rescale", output dtype, bias dtype or None) -> the compiled kernel. The
# kernels check sizes and strides but not dtypes, so the key holds every dtype they were compiled for: any
# other call runs eager. `_glue_failed`: model dtypes whose glue did not compile (not tried again).
_glue: dict[tuple, Callable] = {}
_glue_failed: set[torch.dtype] = set()
_glue_lock = threading.Lock()


def prepare_glue(dtype: torch.dtype) -> bool:
    """Compile int8's glue for a model computing in `dtype` (once per process: ~3 s with Inductor's disk
    cache warm, ~10 s cold), at the current thread count. Not keyed by thread count, unlike attention: the
    kernels are elementwise and exact maxima, whose bits no split among threads changes; but the first
    model built fixes their parallelism for the process (a kernel compiled at 1 thread has no OpenMP).
    Where compiling fails, the eager ops stay in use for this dtype (same bits; all or none of its kernels)
    and a warning says why, once. Only oneDNN's kernel uses it. Returns whether the glue is compiled."""
    if not packed_int8_available() or dtype in _glue_failed:
        return False
    rows, width = Dim("rows", min=1), Dim("features", min=2)
    graphs = {}
    for signed in {False, _onednn_int8_input() == "signed"}:
        graphs["quantize", dtype, signed] = (_Quantize(signed), (torch.ones(32, 768, dtype=dtype),),
                                             ({0: rows, 1: width},))
        graphs["quantize", torch.float32, signed] = (_Quantize(signed), (torch.ones(32, 3072),), ({0: rows, 1: width},))
    # Biases are in the model's dtype; the GELU's input stays float32.
    for out, bias in ((dtype, dtype), (dtype, None), (torch.float32, dtype)):
        example = (torch.ones(32, 3072), torch.ones(32, 1), torch.ones(3072),
                   torch.ones(3072, dtype=bias or torch.float32))  # no bias: `_finished` passes weight_scale
        graphs["rescale", out, bias] = (_Rescale(out, bias is not None), example,
                                        ({0: rows, 1: width}, {0: rows}, {0: width}, {0: width}))
    with _glue_lock:
        compiled = {}
        for key, (module, example, dynamic) in graphs.items():
            try:
                compiled[key] = _glue.get(key) or compile_graph(module, example, dynamic)
            except Exception as exc:  # noqa: BLE001 - inductor raises many kinds (no compiler, no write access, ...)
                log.warning("int8: compiling the quantize/rescale glue failed (%s); eager ops used (same bits)",
                            why_not(exc))
                _glue_failed.add(dtype)
                return False
        _glue.update(compiled)
    gelu_quantize.prepare(lambda sums, scale, weight_scale, bias: _finished(sums, scale, weight_scale, bias,
                                                                            torch.float32), _quantized)
    return True


def _quantized(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x's rows quantized as oneDNN takes rows this wide here (`signed_rows`)."""
    signed = signed_rows(x.shape[1])
    kernel = _glue.get(("quantize", x.dtype, signed))
    return kernel(x.contiguous()) if kernel else (_signed_rows if signed else _shifted_rows)(x)


def _finished(sums: torch.Tensor, scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None,
              dtype: torch.dtype) -> torch.Tensor:
    kernel = _glue.get(("rescale", dtype, None if bias is None else bias.dtype))
    if kernel is None:
        return _rescaled(sums, scale, weight_scale, bias).to(dtype)
    return kernel(sums, scale, weight_scale, weight_scale if bias is None else bias.contiguous())[0]


@dataclass(frozen=True)
class PackedInt8Weight:
    """A `quantize_weight` result (`scale`: one per output channel) laid out once for `int8_linear_packed`:
    into oneDNN's blocked int8 layout (`packed`), where oneDNN takes some heights here, else None; `ones` and
    `zeros` are the unit scales and zero points oneDNN is handed so that it returns the integer sums
    themselves. `blocked`: the values and their sums as `int8_rows` reads them, where its kernel runs here
    (for the heights `int8_rows.takes`), else None. `plain`: the values as they are, for one-row calls to
    `int8_linear`, kept only where `int8_rows` cannot run (each layout is a copy of the weights: 124 MB for
    GPT-2 124M)."""

    scale: torch.Tensor
    out_features: int
    packed: torch.Tensor | None
    ones: torch.Tensor
    zeros: torch.Tensor
    blocked: tuple[torch.Tensor, torch.Tensor] | None = None
    plain: QuantizedWeight | None = None


def pack_int8_weight(weight: torch.Tensor) -> PackedInt8Weight:
    """`quantize_weight`, laid out for `int8_rows` where it runs, reordered for oneDNN where oneDNN takes some
    heights, and kept as it is only where one row goes to `int8_linear`: one layout, on a VNNI CPU without
    AMX, where there used to be three."""
    quantized = quantize_weight(weight)
    out, width = weight.shape
    blocked = int8_rows.blocked(quantized.values) if int8_rows.prepare() and int8_rows.fits(width) else None
    onednn = blocked is None or int8_rows.max_rows() is not None
    return PackedInt8Weight(quantized.scale, out,
                            torch.ops.onednn.qlinear_prepack(quantized.values, None) if onednn else None,
                            torch.ones(out), torch.zeros(out, dtype=torch.int32), blocked,
                            quantized if blocked is None else None)


def int8_linear_packed(x: torch.Tensor, weight: PackedInt8Weight, bias: torch.Tensor | None) -> torch.Tensor:
    """`int8_linear` with the weight prepacked, bit-identical to it. Faster from 2 rows up, because
    `torch._int_mm` re-blocks the weight on every call: GPT-2 124M's linears on the 2-vCPU Zen 5, weights
    streamed from memory, quantizing included, took 4.8 against 7.4 ms at 2 rows, 9.0 against 12.4 at 32
    and 14.2 against 21.2 at 64. One row goes to `int8_linear`, whose one-row kernel is faster (3.7 against
    4.3 ms), where `int8_rows` cannot run; where it can, the heights it `takes` go to it (`packed_int8_sums`):
    every height on a VNNI CPU without AMX. So the int8 values are kept in one or two layouts (`pack_int8_weight`).

    oneDNN's int8 matmul takes unsigned activations (VNNI multiplies u8 by s8; signed ones fall back to a
    reference kernel: 1.2 s for one 64-row call of the MLP's first layer), so each row's int8 values are
    shifted by 128 and oneDNN is told the zero point is 128: the sum is still exact. Scales are applied
    outside, as `int8_linear` applies them, since oneDNN takes only one activation scale for the whole
    batch."""
    return int8_linear_packed_as(x, weight, bias, torch.float32)


def int8_linear_packed_as(x: torch.Tensor | QuantizedRows, weight: PackedInt8Weight, bias: torch.Tensor | None,
                          dtype: torch.dtype) -> torch.Tensor:
    """`int8_linear_packed` converted to `dtype`, with the compiled glue where `prepare_glue` made it. `x` may
    come quantized already (`gelu_to_next`). Where `int8_rows` takes the rows, it also rescales them, in the
    same pass and with the glue's bits (one pass over the outputs and one call fewer: at 32 rows on the Zen 4,
    ~30-40 µs of a GPT-2 layer's 80-250)."""
    if isinstance(x, QuantizedRows):
        rows, scale = x.values, x.scale
    elif x.shape[0] == 1 and weight.blocked is None:
        return int8_linear(x, weight.plain, bias).to(dtype)
    else:
        rows, scale = _quantized(x)
    if weight.blocked is not None and int8_rows.takes(rows.shape[0]) and int8_rows.finishes(dtype, bias):
        return int8_rows.rescaled(rows, *weight.blocked, weight.out_features, scale, weight.scale, bias, dtype)
    return _finished(packed_int8_sums(rows, weight), scale, weight.scale, bias, dtype)


def int8_gelu_to_next(x: torch.Tensor, weight: PackedInt8Weight,
                      bias: torch.Tensor | None) -> torch.Tensor | QuantizedRows:
    """GELU of the layer's output, quantized for the next int8 layer in the same kernel as the rescale
    (`gelu_quantize.py`, same bits) where it is ready and the rows are not `int8_linear`'s (one row without
    `int8_rows`); else the float32 GELU."""
    if (x.shape[0] > 1 or weight.blocked is not None) and gelu_quantize.fits(weight.out_features, bias):
        rows, scale = _quantized(x)
        return QuantizedRows(*gelu_quantize.gelu_quantized(packed_int8_sums(rows, weight), scale,
                                                           weight.scale, bias, signed_rows(weight.out_features)))
    return F.gelu(int8_linear_packed_as(x, weight, bias, torch.float32), approximate="tanh")


def packed_int8_sums(rows: torch.Tensor, weight: PackedInt8Weight) -> torch.Tensor:
    """Each row's integer sums with the weight, as float32, from its int8 values as `_quantized` gives them
    (int8, or uint8 shifted by 128): by `int8_rows` where it runs, for the heights it `takes` (the same sums,
    1.15-2x faster), else by oneDNN."""
    if weight.blocked is not None and int8_rows.takes(rows.shape[0]):
        return int8_rows.sums(rows, *weight.blocked, weight.out_features)
    return _onednn_sums(rows, 0 if rows.dtype == torch.int8 else 128, weight)


def _onednn_sums(x: torch.Tensor, zero_point: int, weight: PackedInt8Weight) -> torch.Tensor:
    return torch.ops.onednn.qlinear_pointwise(x, 1.0, zero_point, weight.packed, weight.ones, weight.zeros, None,
                                              1.0, 0, torch.float32, "none", [], "")


def packed_int8_available() -> bool:
    """Can oneDNN's prepacked int8 matmul run here, exactly? (`_onednn_int8_input`)"""
    return _onednn_int8_input() is not None


@functools.cache
def _onednn_int8_input() -> str | None:
    """How oneDNN's int8 matmul gets exact integer sums here: from rows shifted to uint8 with a zero point of
    128 ("shifted"), from the signed rows themselves ("signed"), or not at all (None). Its quantized ops are in
    every x86 build of torch but a build or CPU without them raises at call time; they are asked, against
    `torch._int_mm`, at 4 and 64 rows with sums past 2^24 (float32 then rounds them, so where oneDNN takes
    the zero point off in float32 rather than in int32, it shows). Only with VNNI: without it, x86 int8
    kernels add u8·s8 pairs in saturating 16-bit lanes, which is not exact either.

    Why two ways: VNNI multiplies u8 by s8, so on a VNNI CPU oneDNN wants shifted rows (signed ones fall back
    to a reference kernel: 1.2 s for one 64-row call of the MLP's first layer on the Zen 5). On an AMX Xeon
    (2026-12-03) its AMX kernel, from 5 rows up, takes the zero point off in float32 and some sums came out 2
    off; there the signed rows are exact and as fast (GPT-2's layers at 8-64 rows, benchmarks/RESULTS.md)."""
    if not (hasattr(torch.ops.onednn, "qlinear_prepack") and vnni()):
        return None
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(64, 3072, generator=gen), torch.randn(16, 3072, generator=gen)
    x[:, ::2] = w[:, ::2] = 10.0  # every other product 127·127, one sign: past 2^24, and where saturation shows
    try:
        quantized = quantize_weight(w)  # not `pack_int8_weight`: no `int8_rows` layout, these are oneDNN's sums
        weight = PackedInt8Weight(quantized.scale, 16, torch.ops.onednn.qlinear_prepack(quantized.values, None),
                                  torch.ones(16), torch.zeros(16, dtype=torch.int32))
        for kind, zero_point in (("shifted", 128), ("signed", 0)):
            exact = True
            for rows in (4, 64):
                rounded, _ = _rounded_rows(x[:rows])
                expected = torch._int_mm(rounded.to(torch.int8), quantized.values.t()).float()
                values = rounded.add(zero_point).to(torch.uint8 if zero_point else torch.int8)
                exact = exact and torch.equal(_onednn_sums(values, zero_point, weight), expected)
            if exact:
                return kind
    except RuntimeError:
        pass
    return None


def _int8(name: str, pack, linear_as, dtype: torch.dtype, gelu_to_next=None) -> LinearKernel:
    """An int8 kernel for a model computing in `dtype`: outputs in `dtype`, except the fused GELU's, which
    stays float32 because its only reader is the next int8 layer (it would convert it back: two passes over
    the MLP's widest activation saved, and GELU runs in fp32's faster kernel). `linear_as(x, weight, bias,
    out_dtype)`."""

    def apply(x: torch.Tensor, weight, bias: torch.Tensor | None) -> torch.Tensor:
        return linear_as(x, weight, bias, dtype)

    def apply_gelu(x: torch.Tensor, weight, bias: torch.Tensor | None) -> torch.Tensor:
        return F.gelu(linear_as(x, weight, bias, torch.float32), approximate="tanh")

    return LinearKernel(name, pack, apply, apply_gelu, gelu_to_next=gelu_to_next)


def int8_kernel(dtype: torch.dtype) -> LinearKernel:
    """The int8 kernel with `torch._int_mm`, which runs wherever torch does."""
    return _int8("int8-dynamic", quantize_weight, lambda x, w, b, out: int8_linear(x, w, b).to(out), dtype)


def int8_kernels(dtype: torch.dtype) -> list[LinearKernel]:
    """The int8 kernels this machine can run, fastest first. Both give the same bits (exact integer sums,
    scales applied in the same order), so which one a machine picks never changes a song. The first is named
    `int8-vnni` where `int8_rows` takes every height, else `int8-onednn-packed` (oneDNN for some or all)."""
    plain = int8_kernel(dtype)
    if not packed_int8_available():
        return [plain]
    name = "int8-vnni" if int8_rows.prepare() and int8_rows.max_rows() is None else "int8-onednn-packed"
    return [_int8(name, pack_int8_weight, int8_linear_packed_as, dtype, int8_gelu_to_next), plain]


def int8_available(device: torch.device | None = None) -> bool:
    """Int8 matmuls are used on the CPU only: CUDA's `_int_mm` needs more than 16 rows, and bf16 is what a
    GPU is fast at."""
    return (device is None or device.type == "cpu") and hasattr(torch, "_int_mm")
