"""Int8 linear layers (W8A8): int8 weights with one scale per output channel, each input row quantized
to int8 with its own scale, products summed in int32.

Why int8: a decode step streams every weight once, so at batch 1 it is bound by memory, and int8 halves
the bytes of bf16; batched, the CPU's int8 dot products (AVX512-VNNI) do twice the work per cycle of bf16.
Measured on the 2-vCPU Zen 4 for GPT-2 124M's layers (weights out of cache): 4.8 against 8.1 ms per step
at 1 row, 17 against 23 ms at 32 and 25 against 38 ms at 64; the whole engine, 1.28x bf16 at batch 1 and
1.07x at 64 but 0.8-1.0x at 8-32, where the quantize/dequantize ops eat the gain (benchmarks/RESULTS.md).
The bundled model's validation perplexity went from 59.44 (bf16) to 59.48 (benchmarks/precision_quality.py).

Why it keeps songs batch-invariant by construction: an integer sum is exact, so whichever kernel the
backend picks for a batch height, and in whatever order it adds, row r's int32 result is the same; the
scales are per row and per column and applied elementwise. The one choice that could leak the batch
into a row, a scale shared by the rows, is exactly what per-row activation scales avoid.

What it trades: weights and activations are rounded to 8 bits, so songs differ from bf16's (like any
change of precision), and models with large activation outliers lose more than the bundled one does;
measure before serving another model in int8.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from billionsongs.model.linear import LinearKernel

LEVELS = 127  # symmetric: -127..127, so negating a value never overflows


@dataclass(frozen=True)
class QuantizedWeight:
    """`values` (out, in) int8 and `scale` (out,) float32: weight ≈ values · scale[:, None]."""

    values: torch.Tensor
    scale: torch.Tensor


def quantize_weight(weight: torch.Tensor) -> QuantizedWeight:
    """Round an (out, in) weight to int8 with one scale per output channel (its largest magnitude ÷ 127)."""
    w = weight.float()
    scale = w.abs().amax(dim=1).clamp_min_(torch.finfo(torch.float32).tiny).div_(LEVELS)
    return QuantizedWeight((w / scale[:, None]).round_().to(torch.int8), scale)  # not in place: w may be weight


def int8_linear(x: torch.Tensor, weight: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
    """`x @ W.T + b` in int8 with int32 sums, returned in float32. Few, in-place ops: at batch 1 each
    extra tensor op costs about as much as a small layer's matmul does. One row goes to the backend as one
    row: its one-row kernel adds in another order, which exact sums make harmless (and it is faster)."""
    x32 = x.float()
    scale = x32.abs().amax(dim=-1, keepdim=True).clamp_min_(torch.finfo(torch.float32).tiny).div_(LEVELS)
    quantized = (x32 / scale).round_().to(torch.int8)  # not in place: x.float() is x itself in fp32
    out = torch._int_mm(quantized, weight.values.t()).float().mul_(scale).mul_(weight.scale)
    if bias is not None:
        out += bias
    return out


def int8_kernel(dtype: torch.dtype) -> LinearKernel:
    """The int8 linear kernel for a model computing in `dtype`: outputs in `dtype`, except the fused
    GELU's, which stays float32 because its only reader is the next int8 layer (it would convert it
    back: two passes over the MLP's widest activation saved, and GELU runs in fp32's faster kernel)."""

    def apply(x: torch.Tensor, weight: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
        return int8_linear(x, weight, bias).to(dtype)

    def apply_gelu(x: torch.Tensor, weight: QuantizedWeight, bias: torch.Tensor | None) -> torch.Tensor:
        return F.gelu(int8_linear(x, weight, bias), approximate="tanh")

    return LinearKernel("int8-dynamic", quantize_weight, apply, apply_gelu)


def int8_available(device: torch.device | None = None) -> bool:
    """Int8 matmuls are used on the CPU only: CUDA's `_int_mm` needs more than 16 rows, and bf16 is what a
    GPU is fast at."""
    return (device is None or device.type == "cpu") and hasattr(torch, "_int_mm")
