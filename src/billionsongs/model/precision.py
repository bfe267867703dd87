"""Which precision the engine computes in.

bf16 is the default where the CPU multiplies bf16 natively (AVX512_BF16 or AMX, as oneDNN reports) or
on CUDA: on the 2-vCPU Zen 4 it is 1.5-2x fp32 at every batch size (benchmarks/RESULTS.md). Elsewhere
bf16 is emulated and slower than fp32, so fp32 is the default there.

`int8` runs the linear layers in int8 (`quantized.py`) and the rest (attention, layer norm, the cache)
in what "auto" picks. It is faster again on a CPU, but it rounds weights to 8 bits, so it is a choice,
not the default: the bundled model loses 0.07% in perplexity, a model with activation outliers more.

Songs differ between precisions (and can differ between CPU families), which is harmless for a site
because a song is stored the first time it is written; a fleet of workers on mixed hardware should set
BILLIONSONGS_DTYPE explicitly so that which worker writes a song never matters.

On a CPU without bf16 arithmetic or int8 dot products (an AVX2-only EPYC, say) those precisions still
work, batch-invariant as everywhere, only slowly: asking for one there logs a warning (`slow_reason`).
"""

import logging
import os
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

CHOICES = ("auto", "float32", "bfloat16", "int8")


@dataclass(frozen=True)
class Precision:
    """`dtype` for activations, attention and the KV cache; `int8` for the linear layers' weights and inputs."""

    dtype: torch.dtype
    int8: bool = False

    @property
    def name(self) -> str:
        return "int8" if self.int8 else str(self.dtype).removeprefix("torch.")


def native_bf16(device: torch.device | None = None) -> bool:
    """Does `device` (default: the CPU, or CUDA where torch sees a GPU) compute bf16 matmuls in hardware?"""
    if device is None and torch.cuda.is_available() or device is not None and device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def vnni() -> bool:
    """Does the CPU have VNNI int8 dot products? Without them oneDNN's int8 matmul (`torch._int_mm`) falls
    back to a reference kernel: on a 2-vCPU AVX2 EPYC, GPT-2 124M's int8 step took 1.8 s at batch 32,
    16x float32's 115 ms. Torch reports AVX512-VNNI here; a CPU with only AVX-VNNI (no AVX-512) is
    counted as without, unmeasured (it only changes whether a warning is logged)."""
    check = getattr(torch.cpu, "_is_vnni_supported", None)
    return True if check is None else bool(check())


def slow_reason(precision: "Precision", device: torch.device | None = None) -> str | None:
    """Why `precision` runs slower than float32 on `device` (default CPU), or None where it does not.

    Both slow cases are CPUs missing an instruction set, found by what torch reports, not by timing, so a
    fleet's workers agree on the answer."""
    if device is not None and device.type != "cpu":
        return None
    if precision.int8 and not vnni():
        return ("this CPU has no VNNI int8 dot products, so int8 matmuls run a reference kernel "
                "(16x slower than float32 at batch 32 on an AVX2 EPYC)")
    if precision.dtype == torch.bfloat16 and not native_bf16(device):
        return ("this CPU has no bf16 arithmetic (AVX512_BF16 or AMX), so bf16 is emulated "
                "(4x slower than float32 at batch 32 on an AVX2 EPYC)")
    return None


def resolve_precision(name: "str | torch.dtype | Precision | None" = None,
                      device: torch.device | None = None, *, warn: bool = True) -> Precision:
    """`name` (one of CHOICES or a float dtype; default $BILLIONSONGS_DTYPE, else "auto") as a Precision
    for `device` (what "auto" picks depends on it). `warn`: log `slow_reason` where there is one."""
    if isinstance(name, Precision):
        return name
    if isinstance(name, torch.dtype):
        if name not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, not {name}")
        name = str(name).removeprefix("torch.")
    name = (name or os.environ.get("BILLIONSONGS_DTYPE") or "auto").strip().lower()
    if name not in CHOICES:
        raise ValueError(f"dtype must be one of {', '.join(CHOICES)}, not {name!r}")
    auto = Precision(torch.bfloat16 if native_bf16(device) else torch.float32)
    if name == "auto":
        return auto
    precision = Precision(auto.dtype, int8=True) if name == "int8" else Precision(getattr(torch, name))
    if warn and (reason := slow_reason(precision, device)):
        log.warning("precision %s: %s; auto picks %s here", name, reason, auto.name)
    return precision
