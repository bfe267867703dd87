"""Rows times an int8 weight (`int8_rows.cpp`): the int8 engine's matmul on AVX512-VNNI CPUs.

Why: a step at batch 1 streams every weight once, so it is bound by memory, and int8 exists to halve the
bytes; but oneDNN's int8 kernel and `torch._int_mm` read the weights far slower than the memory gives when
there are only a few rows. This kernel reads each 64-byte block of weight once from memory, with the weights
laid out in the order it reads them, and uses it for up to six rows held in registers, the block staying in
the core's cache for the next six. GPT-2 124M's int8 layers, one step's worth, weights out of cache:
- on the 2-vCPU AMX Xeon (2026-12-03), 2.4 ms at 1-4 rows against oneDNN's 4.1-4.4 (50-55 GB/s against
  25-30; at 8 rows still 3.7 against 4.2); the whole int8 engine at batch 1 went from 13.8 to 6.9 ms a step;
- on the 2-vCPU Zen 4 (2026-12-03, `max_rows` explains the limit), 1.4-1.7x oneDNN at 1-16 rows and
  1.15-1.3x at 32-64 (12.2 against 14.6-16.3 ms at 32 rows; 21-22 against 24-28 at 64: 710-760 GOP/s,
  the in-run int8 GEMM probe's level).

Why it changes no song: the sums are of integers, exact (the comment atop `int8_rows.cpp` bounds them), so
any kernel returns the same int32 sums; `prepare` checks them against `torch._int_mm`'s on this machine,
and the float32 sums it returns are those exact integers rounded as torch rounds them.
"""

import functools
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from billionsongs.model.inductor import checked_kernel

SOURCE = Path(__file__).with_name("int8_rows.cpp")
_ARGUMENTS = ["const void*", "const int8_t*", "const int32_t*", "void*", "int64_t", "int64_t", "int64_t", "int64_t",
              "int64_t", "const float*", "const float*", "const void*", "int64_t", "int64_t"]
_BIAS_KINDS = {None: 0, torch.float32: 1, torch.bfloat16: 2}
GROUP = 64  # outputs per block of the weight layout

_kernel: Callable | None = None
_tried = False
_lock = threading.Lock()


def blocked(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """An (out, in) int8 weight in the kernel's layout, (ceil(out / 64), in / 4, 64, 4) with zeros past `out`,
    and 128 times each output's sum (int32, padded likewise), which the kernel takes off the shifted rows'."""
    out, width = values.shape
    padded = torch.zeros(-(-out // GROUP) * GROUP, width, dtype=torch.int8)
    padded[:out] = values
    layout = padded.view(-1, GROUP, width // 4, 4).transpose(1, 2).contiguous()
    return layout, padded.sum(1, dtype=torch.int32).mul_(128)


@functools.cache
def max_rows() -> int | None:
    """The most rows to hand this kernel (None: any number). On CPUs with AMX, oneDNN's int8 kernel runs on
    the tile unit, which does several times VNNI's work a cycle, so from 9 rows up it gets the rows (on the AMX
    Xeon this kernel in blocks of 4 rows was 1.7x oneDNN at 1-4 rows and still 1.14x at 8; taller batches were
    not measured there with blocks of 6). Elsewhere oneDNN also uses VNNI and this kernel was faster at every
    height measured (1-64 rows, Zen 4)."""
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)
    return 8 if amx is not None and amx() else None


def takes(rows: int) -> bool:
    """Does this kernel (where built) take a matmul of `rows` rows, rather than oneDNN's (`max_rows`)?"""
    limit = max_rows()
    return limit is None or rows <= limit


def fits(width: int) -> bool:
    """Is the kernel ready (`prepare`) for rows this wide?"""
    return _kernel is not None and width % 4 == 0


def sums(rows: torch.Tensor, weight: torch.Tensor, compensation: torch.Tensor, out_features: int) -> torch.Tensor:
    """Each row's integer sums with the weight, as float32, from its int8 values (rows by in: int8, or uint8
    shifted by 128) and the weight as `blocked` returned it."""
    return _run(_kernel, rows, weight, compensation, out_features)


def finishes(dtype: torch.dtype, bias: torch.Tensor | None) -> bool:
    """Can `rescaled` return this output dtype with this bias?"""
    return dtype in (torch.float32, torch.bfloat16) and (bias is None or bias.dtype in _BIAS_KINDS)


def rescaled(rows: torch.Tensor, weight: torch.Tensor, compensation: torch.Tensor, out_features: int,
             scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None,
             dtype: torch.dtype) -> torch.Tensor:
    """`sums` times each row's `scale` (rows, 1), then each column's `weight_scale`, plus `bias`, in `dtype`,
    in the same pass as the sums: the bits of int8's rescale glue (`quantized._finished`), without a pass
    over the sums and a call of its own (`finishes` says which dtypes)."""
    return _run(_kernel, rows, weight, compensation, out_features, scale, weight_scale, bias, dtype)


def _run(kernel: Callable, rows: torch.Tensor, weight: torch.Tensor, compensation: torch.Tensor, out_features: int,
         scale: torch.Tensor | None = None, weight_scale: torch.Tensor | None = None, bias: torch.Tensor | None = None,
         dtype: torch.dtype = torch.float32) -> torch.Tensor:
    height, width = rows.shape
    out = torch.empty(height, out_features, dtype=dtype)
    rescale = scale is not None
    scale = scale.contiguous() if rescale else compensation  # unread placeholders where there is no rescale
    weight_scale = weight_scale.contiguous() if rescale else compensation
    kernel(rows.contiguous(), weight, compensation, out, height, width, out_features, int(rows.dtype == torch.int8),
           int(rescale), scale, weight_scale, compensation if bias is None else bias.contiguous(),
           _BIAS_KINDS[None if bias is None else bias.dtype], int(dtype == torch.bfloat16))
    return out


def prepare() -> bool:
    """Build the kernel and check it against `torch._int_mm`, once per process (~3 s cold; Inductor caches the
    library on disk). Only with AVX512-VNNI; where it cannot be built or differs, a warning says why, once,
    and oneDNN's kernel stays in use. Returns whether the kernel is used."""
    global _kernel, _tried
    with _lock:
        if not _tried:
            _tried = True
            if buildable():
                _kernel = checked_kernel(SOURCE, _ARGUMENTS, _matches, "int8's VNNI matmul", "oneDNN's kernel")
    return _kernel is not None


@functools.cache
def buildable() -> bool:
    """Can the kernel run on this CPU? Only where torch says it has AVX512-VNNI (running its instruction
    elsewhere would crash the process, not fail a check) and Inductor builds for AVX-512."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    check = getattr(torch.cpu, "_is_vnni_supported", None)
    return check is not None and bool(check()) and "CPU_CAPABILITY_AVX512" in pick_vec_isa().build_macro()


@torch.inference_mode()
def _matches(kernel: Callable) -> bool:
    """The same float32 sums as `torch._int_mm`'s, for 1 to 17 rows (blocks of every height, 1 to 6) of widths
    and heights GPT-2 has and odd ones (a partial last block), with extreme values in every row and weight
    column, from shifted and signed rows; and, rescaled, the eager ops' bits for every output dtype and bias."""
    gen = torch.Generator().manual_seed(11)
    for rows, width, out in ((1, 768, 2304), (4, 3072, 768), (3, 768, 50257 % 512 + 64), (9, 256, 100), (2, 4, 1),
                             (17, 64, 130)):
        values = torch.randint(-127, 128, (rows, width), generator=gen, dtype=torch.int8)
        weight = torch.randint(-127, 128, (out, width), generator=gen, dtype=torch.int8)
        values[:, 0], weight[:, 0] = -127, 127
        values[:, -1], weight[:, -1] = 127, 127
        expected = torch._int_mm(torch.cat([values, values]), weight.t())[:rows].float()  # _int_mm wants 2 rows+
        layout, compensation = blocked(weight)
        for form in (values.to(torch.int16).add_(128).to(torch.uint8), values):
            if not torch.equal(_run(kernel, form, layout, compensation, out), expected):
                return False
        scale, weight_scale = torch.rand(rows, 1, generator=gen) / 100, torch.rand(out, generator=gen) / 100
        for dtype in (torch.float32, torch.bfloat16):
            for bias in (None, torch.randn(out, generator=gen), torch.randn(out, generator=gen).bfloat16()):
                rescaled = expected * scale * weight_scale
                eager = (rescaled if bias is None else rescaled + bias).to(dtype)
                got = _run(kernel, values, layout, compensation, out, scale, weight_scale, bias, dtype)
                if not torch.equal(got, eager):
                    return False
    return True
