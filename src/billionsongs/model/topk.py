"""Top-k of each row of logits, with torch.topk's exact result, in one pass over the row (`topk.cpp`).

Why: sampling takes the 40 largest of 50,257 logits per row every step, and torch.topk first copies each row
into (value, index) pairs and then runs a heap selection over all of them: 1.1-1.2 ms of a 21-25 ms GPT-2
step at batch 32, 2.4 ms at 64 (torch.profiler, benchmarks/RESULTS.md). The kernel runs the same heap
selection but reads the row with vector compares and touches the heap only for values that would move it.

Why it changes no song: ties. Logits in bf16 have 8 significant bits, so equal values near the top are
common, and which of them torch.topk returns first decides which token a draw picks. The kernel moves the
heap through exactly the states libstdc++'s partial_sort does (the comment in topk.cpp says why), so it
returns the same values and indices in the same order. `top_k` uses it only after checking that on this
machine, against torch.topk, on rows full of ties; anything it does not cover goes to torch.topk.
"""

import threading
from collections.abc import Callable
from pathlib import Path

import torch

from billionsongs.model.inductor import checked_kernel

SOURCE = Path(__file__).with_name("topk.cpp")
_ARGUMENTS = ["const void*", "void*", "int64_t*", "int64_t", "int64_t", "int64_t", "int64_t"]
DTYPES = (torch.bfloat16, torch.float32)

_kernel: Callable | None = None  # built and checked (`available`), or None
_tried = False
_lock = threading.Lock()


def top_k(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`torch.topk(logits, k, dim=-1, sorted=True)`: (values, indices), bit for bit. The kernel takes 2-D CPU
    logits in bf16 or fp32 where torch.topk would take its partial sort (k * 64 <= the row's length)."""
    if not (logits.dim() == 2 and k > 0 and k * 64 <= logits.shape[1] and logits.dtype in DTYPES
            and logits.device.type == "cpu" and available()):
        return torch.topk(logits, k, dim=-1, sorted=True)
    return _run(_kernel, logits, k)


def _run(kernel: Callable, logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    logits = logits.contiguous()
    rows, n = logits.shape
    values = torch.empty(rows, k, dtype=logits.dtype)
    indices = torch.empty(rows, k, dtype=torch.long)
    kernel(logits, values, indices, rows, n, k, int(logits.dtype == torch.bfloat16))
    return values, indices


def available() -> bool:
    """Is the kernel in use here? It is built and checked once per process (~7 s cold, Inductor caches the
    library on disk; the check ~0.1 s); where either fails, a warning says why, once, and torch.topk stays."""
    global _kernel, _tried
    if not _tried:
        with _lock:
            if not _tried:
                _kernel = checked_kernel(SOURCE, _ARGUMENTS, _matches, "top-k", "torch.topk")
                _tried = True
    return _kernel is not None


@torch.inference_mode()
def _matches(kernel: Callable) -> bool:
    """Same values and indices as torch.topk for both dtypes, on rows built to tie: values drawn from a few
    dozen levels (so the top k holds many equal values), some -inf (masked tokens), a NaN row, at k = 1, 2
    and 40, and at lengths that leave a tail past the last full vector."""
    gen = torch.Generator().manual_seed(11)
    for dtype in DTYPES:
        for rows, n, k, levels in ((64, 50257, 40, 64), (3, 2560, 40, 8), (5, 1000, 2, 3), (2, 100, 1, 4),
                                   (8, 50257, 40, 100000)):
            x = torch.randint(0, levels, (rows, n), generator=gen).to(dtype) / 4
            x[0, ::7] = -torch.inf
            if rows > 2:
                x[1, 5::300] = torch.nan
            expected = torch.topk(x, k, dim=-1, sorted=True)
            got = _run(kernel, x, k)
            if not (torch.equal(got[0].view(torch.int16 if dtype == torch.bfloat16 else torch.int32),
                                expected[0].view(torch.int16 if dtype == torch.bfloat16 else torch.int32))
                    and torch.equal(got[1], expected[1])):
                return False
    return True
