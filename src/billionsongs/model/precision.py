"""Which precision the engine computes in.

bf16 is the default where the CPU multiplies bf16 natively (AVX512_BF16 or AMX, as oneDNN reports) or
on CUDA: on the 2-vCPU Zen 4 it is 1.5-2x fp32 at every batch size (benchmarks/RESULTS.md). Elsewhere
bf16 is emulated and slower than fp32, so fp32 is the default there.

Songs differ between precisions (and can differ between CPU families), which is harmless for a site
because a song is stored the first time it is written; a fleet of workers on mixed hardware should set
BILLIONSONGS_DTYPE explicitly so that which worker writes a song never matters.
"""

import os

import torch

CHOICES = ("auto", "float32", "bfloat16")


def native_bf16() -> bool:
    """Does this machine compute bf16 matmuls in hardware?"""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def resolve_dtype(name: str | None = None) -> torch.dtype:
    """`name` ("auto", "float32", "bfloat16"; default $BILLIONSONGS_DTYPE, else "auto") as a dtype."""
    name = (name or os.environ.get("BILLIONSONGS_DTYPE") or "auto").strip().lower()
    if name not in CHOICES:
        raise ValueError(f"dtype must be one of {', '.join(CHOICES)}, not {name!r}")
    if name == "auto":
        return torch.bfloat16 if native_bf16() else torch.float32
    return getattr(torch, name)
