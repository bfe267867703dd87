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
"""

import os
from dataclasses import dataclass

import torch

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


def resolve_precision(name: "str | torch.dtype | Precision | None" = None,
                      device: torch.device | None = None) -> Precision:
    """`name` (one of CHOICES or a float dtype; default $BILLIONSONGS_DTYPE, else "auto") as a Precision
    for `device` (what "auto" picks depends on it)."""
    if isinstance(name, Precision):
        return name
    if isinstance(name, torch.dtype):
        if name not in (torch.float32, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, not {name}")
        return Precision(name)
    name = (name or os.environ.get("BILLIONSONGS_DTYPE") or "auto").strip().lower()
    if name not in CHOICES:
        raise ValueError(f"dtype must be one of {', '.join(CHOICES)}, not {name!r}")
    if name in ("auto", "int8"):
        return Precision(torch.bfloat16 if native_bf16(device) else torch.float32, int8=name == "int8")
    return Precision(getattr(torch, name))
