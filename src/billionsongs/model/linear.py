"""Linear layers whose row r never depends on the other rows of the batch.

CPU BLAS picks kernels by the number of rows, so fp32 `x @ W.T` for a row changes in its last bits with
batch size; a sampled token can then flip and the song diverges. This module tries, fastest first,
ways to compute a linear layer and keeps the first whose rows come out bit-identical at every batch
height and thread count (`choose_kernel`):

1. `onednn-packed` (CPU, bf16 and fp32): weights reordered once into oneDNN's blocked layout, bias
   fused. Measured on the 2-vCPU Zen 4 for GPT-2's layers in bf16: 2.5-3x plain `F.linear` at 1-2 rows
   (plain re-blocks the weight on every call) and 1.2-1.6x at 32-64 rows; the 768x50257 output layer
   went from 11.2 to 6.8 ms at 32 rows.
   oneDNN computes a single row with another kernel that rounds differently in a few outputs (10-35% of
   random rows), so fewer than 4 rows are sent as 4 (its 4-row kernel is also faster than its 2-row one).
2. `onednn-packed-rows33-64`, `onednn-packed-rows4-32`: the same packed weights, but every call gets a
   number of rows within a band: taller batches are several calls of the band's top, and a call below
   its bottom is padded with copies of the first row. On an AMX Xeon, oneDNN's bf16 kernel blocks rows
   by the call's height, so a row's last bits depend on it, and plain packed fails the probe for GPT-2's
   layers; within a band of heights each row meets the same code. On the Emerald Rapids (2026-12-01),
   calls of exactly 64 rows were row-invariant for GPT-2's 768-deep layers but not for the 3072-deep
   projection, where 32 was the tallest height that is (40-128 are not), so each layer shape gets its
   own kernel (`GPT2`). On the second AMX Xeon (2026-12-03) every height from 33 to 64 gave the 64-row
   call's bits for the 768-deep layers and the output layer, and every height from 1 to 32 the 32-row
   call's for the projection: hence bands, not fixed heights, with the same bits, and a batch of one
   pays for 33 rows of arithmetic (4 in the projection), not 64 (32): against fixed heights there, the
   whole bf16 engine ran 1.20-1.22x at batch 1, 1.16-1.18x at 8 and 1.0x at 64, every song the same
   (alternating processes, benchmarks/RESULTS.md). Each call streams the whole
   weight, so the tallest band wins at batch 64: for GPT-2 124M in bf16 on the Emerald Rapids (whole
   engine, alternating processes), 32-row calls everywhere were 1.2-1.9x `gemm-tile16` at batch 32, and
   64-row calls where invariant 1.2-1.4x 32-row calls everywhere at batch 64, equal at 32.
3. `gemm`: plain `F.linear`, one row sent as two (its one-row kernel rounds differently, as above).
4. `gemm-tile16`, `gemm-tile1`: fixed-height row tiles of plain `F.linear`, so every row always meets the
   same kernel, and pays at batch 1 (16 rows of work for one).
Chosen so far: fp32 and bf16 take `onednn-packed` on the Zen 4, and fp32 on the AMX Xeons, where GPT-2's
bf16 layers take rows33-64 (rows4-32 for the 3072-deep one); on an AVX2 EPYC fp32 takes `onednn-packed` and
bf16 `gemm` (oneDNN's packed bf16 refuses CPUs without AVX-512).
"""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from billionsongs.model.rows import with_rows

ROW_TILE = 16
# oneDNN's packed kernel gets at least this many rows (padded with copies of the first): its 1-row kernel
# rounds differently, and for GPT-2 124M in bf16 here 2 rows took 289 µs a layer where 4 took 223.
ONEDNN_MIN_ROWS = 4
# Where oneDNN's rounding depends on the call's height (AMX Xeon, bf16), every call's height is within one of
# these bands (lowest, highest), the tallest that is row-invariant for the layer (module docstring, item 2).
ONEDNN_BANDS = ((33, 64), (ONEDNN_MIN_ROWS, 32))
# 50: a height inside the 33-64 band (`ONEDNN_BANDS`), which the others reach only at its ends.
PROBE_ROWS = (2, 3, 8, 17, 33, 50, 67)


# (x, weight as the kernel's `pack` returned it, bias) -> x @ W.T + b
Apply = Callable[[torch.Tensor, Any, torch.Tensor | None], torch.Tensor]


@dataclass(frozen=True)
class LinearKernel:
    """One way to compute `x @ W.T + b`: `pack` prepares a weight once, `apply` runs it, and `fused_gelu`,
    where the backend has it, runs it followed by GPT-2's tanh GELU in one pass over the output."""

    name: str
    pack: Callable[[torch.Tensor], Any]
    apply: Apply
    fused_gelu: Apply | None = None
    # Fewer rows than this are padded by `apply` (a copy each call); `GPT2.step` pads its whole step once instead.
    min_rows: int = 1
    # `apply_gelu` with its result in the form this kernel's `apply` reads next (int8: already quantized), where
    # that saves passes over it: apply(gelu_to_next(x)) equals apply(apply_gelu(x)) bit for bit. Only for a
    # next layer of the same kernel (`GPT2` checks).
    gelu_to_next: Callable[[torch.Tensor, Any, torch.Tensor | None], Any] | None = None

    def apply_gelu(self, x: torch.Tensor, weight: Any, bias: torch.Tensor | None) -> torch.Tensor:
        if self.fused_gelu is not None:
            return self.fused_gelu(x, weight, bias)
        return F.gelu(self.apply(x, weight, bias), approximate="tanh")


def _same(weight: torch.Tensor) -> torch.Tensor:
    return weight


def _gemm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if x.shape[0] == 1:
        return F.linear(x.expand(2, -1), weight, bias)[:1]
    return F.linear(x, weight, bias)


def _tiled(tile: int) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]:
    def apply(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows = x.shape[0]
        pad = -rows % tile
        if pad:
            x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
        out = torch.cat([F.linear(part, weight) for part in x.split(tile)])[:rows]
        return out if bias is None else out + bias

    return apply


def _onednn_pack(weight: torch.Tensor) -> torch.Tensor:
    return torch.ops.mkldnn._reorder_linear_weight(weight, ROW_TILE)


def _onednn(post_op: str, scalars: list, algorithm: str) -> Apply:
    def apply(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows = x.shape[0]
        if rows < ONEDNN_MIN_ROWS:
            x = with_rows(x, ONEDNN_MIN_ROWS)
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, scalars, algorithm)[:rows]
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, scalars, algorithm)

    return apply


def _onednn_band(post_op: str, scalars: list, algorithm: str, lowest: int, highest: int) -> Apply:
    def apply(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        rows = x.shape[0]
        parts = list(x.split(highest))
        parts[-1] = with_rows(parts[-1], max(lowest, parts[-1].shape[0]))
        outs = [torch.ops.mkldnn._linear_pointwise(part, weight, bias, post_op, scalars, algorithm) for part in parts]
        return (outs[0] if len(outs) == 1 else torch.cat(outs))[:rows]

    return apply


ONEDNN_PACKED = LinearKernel("onednn-packed", _onednn_pack, _onednn("none", [None], ""), _onednn("gelu", [], "tanh"),
                             ONEDNN_MIN_ROWS)
ONEDNN_BANDED = [LinearKernel(f"onednn-packed-rows{low}-{high}", _onednn_pack,
                              _onednn_band("none", [None], "", low, high), _onednn_band("gelu", [], "tanh", low, high))
                 for low, high in ONEDNN_BANDS]
GEMM = LinearKernel("gemm", _same, _gemm, min_rows=2)
TILED = [LinearKernel(f"gemm-tile{tile}", _same, _tiled(tile)) for tile in (ROW_TILE, 1)]


@dataclass(frozen=True)
class PackedLinear:
    """One layer: its weight as `kernel` packed it, and its bias. Each layer shape has its own kernel because
    which kernels are row-invariant can depend on the shape (the 3072-deep projection on an AMX Xeon)."""

    kernel: LinearKernel
    weight: Any
    bias: torch.Tensor | None

    @classmethod
    def pack(cls, kernel: LinearKernel, weight: torch.Tensor, bias: torch.Tensor | None) -> "PackedLinear":
        return cls(kernel, kernel.pack(weight), bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel.apply(x, self.weight, self.bias)

    def gelu(self, x: torch.Tensor) -> torch.Tensor:
        return self.kernel.apply_gelu(x, self.weight, self.bias)

    def gelu_to_next(self, x: torch.Tensor) -> Any:
        """`gelu`, for the next layer (of the same kernel) to read: see `LinearKernel.gelu_to_next`."""
        return (self.kernel.gelu_to_next or self.kernel.apply_gelu)(x, self.weight, self.bias)


@functools.cache
def packed_kernel_available(dtype: torch.dtype, device: torch.device | None = None) -> bool:
    """Can oneDNN's prepacked linear run `dtype` on `device` (default CPU) here? Asked by packing a small
    weight: the op exists in every x86 build, but its bf16 path refuses CPUs without AVX-512 (or
    AVX-NE-CONVERT) at call time, as on an AVX2-only EPYC."""
    on_cpu = device is None or device.type == "cpu"
    if not (on_cpu and dtype in (torch.bfloat16, torch.float32) and torch.backends.mkldnn.is_available()
            and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")):
        return False
    try:
        _onednn_pack(torch.zeros(ROW_TILE, ROW_TILE, dtype=dtype))
    except RuntimeError:
        return False
    return True


def _candidates(dtype: torch.dtype, device: torch.device) -> list[LinearKernel]:
    packed = [ONEDNN_PACKED, *ONEDNN_BANDED] if packed_kernel_available(dtype, device) else []
    return packed + [GEMM, *TILED]


def _probe_inputs(in_features: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Random rows and GELU-shaped rows: the one-row rounding difference showed only on the latter."""
    gen = torch.Generator().manual_seed(1234)
    plain = torch.randn(max(PROBE_ROWS), in_features, generator=gen)
    gelu = F.gelu(2 * torch.randn(max(PROBE_ROWS), in_features, generator=gen), approximate="tanh")
    return torch.stack([plain, gelu]).to(dtype=dtype, device=device)


def is_row_invariant(kernel: LinearKernel, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Is every row of the kernel's output the same as that row computed alone, at every batch height
    and at 1 and the current number of threads? Every row is checked: a one-row difference showed up
    in a few of 20 random rows, so a probe of one row passes by luck."""
    try:
        packed = kernel.pack(weight)
        for apply in (kernel.apply, kernel.apply_gelu):
            for x in _probe_inputs(weight.shape[1], weight.dtype, weight.device):
                alone = torch.cat([apply(row, packed, bias) for row in x.split(1)])
                for rows in PROBE_ROWS:
                    for threads in {1, torch.get_num_threads()}:
                        previous = torch.get_num_threads()
                        torch.set_num_threads(threads)
                        try:
                            out = apply(x[-rows:], packed, bias)
                        finally:
                            torch.set_num_threads(previous)
                        if not torch.equal(out, alone[-rows:]):
                            return False
    except RuntimeError:  # a kernel this build or CPU cannot run
        return False
    return True


def choose_kernel(weights: list[tuple[torch.Tensor, torch.Tensor | None]],
                  candidates: list[LinearKernel] | None = None) -> LinearKernel:
    """The first of `candidates` (default: this dtype's, fastest first) that is row-invariant for every
    (weight, bias) given (one of each shape)."""
    weight = weights[0][0]
    for kernel in candidates or _candidates(weight.dtype, weight.device):
        if all(is_row_invariant(kernel, w, b) for w, b in weights):
            return kernel
    raise RuntimeError("no batch-invariant matmul found on this backend")
