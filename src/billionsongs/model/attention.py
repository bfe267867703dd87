"""Attention for one new query per row over that row's cached keys and values.

Why compiled: with one query per row, attention is 2·rows·heads tiny matrix-vector products over a
cache too big for L3. `torch.bmm` runs each as its own small GEMM and read the cache at ~20 GB/s, 36% of
a batch-32 step (GPT-2 124M shape, 2-core Zen 5, where a plain sum reads 54 GB/s). The same maths
written as multiply-and-sum and compiled by TorchInductor becomes one loop nest per product that
streams the cache: 177 µs against 368 µs for q·Kᵀ and 183 against 380 for the weighted sum of values,
per layer at batch 32 with 160 positions, out of cache. Keys are stored (length, head_dim) and values
(head_dim, length) per head so that both sums run over contiguous memory.

Batch invariance: every output is a reduction over its own row's data only, in an order that depends
on the reduction length, never on the number of rows or threads (the kernel is compiled once for
dynamic sizes; `tests/test_engine.py` checks rows alone against rows in a batch). Positions past a
row's end get weight exactly 0, so a row attending over a longer batch's padded length sums the same
non-zero terms in the same lanes.

`BILLIONSONGS_ATTENTION` picks the implementation: `fused` (bf16 on AVX-512: `fused_attention.py`, the
cache writes and this kernel's exact sums in one hand-written kernel, faster), `compiled` (needs a C++
compiler; fails loudly if compilation fails), `eager` (two batched matmuls, no compiler needed, slower), or
`auto` (default: fused where it runs and matches compiled bit for bit, else compiled where it compiles,
else eager with a warning). Fused and compiled give the same songs; eager rounds differently, so, like the
precision, a fleet of workers should not mix it with them: a song is whatever the first worker wrote.
"""

import logging
import math
import os
import threading
from collections.abc import Callable

import torch
from torch.export import Dim

from billionsongs.model import fused_attention
from billionsongs.model.inductor import compile_graph, why_not

log = logging.getLogger(__name__)

CHOICES = ("auto", "fused", "compiled", "eager")

# (q, keys, values, hidden) -> attention: over caches that already hold this step's keys and values.
Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
# (qkv, keys, values, positions, hidden) -> attention: one layer's step, cache writes included (`writing`).
Step = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def _summed(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """q (rows, heads, hd); keys (rows, heads, L, hd); values (rows, heads, hd, L); hidden (rows, 1, L) is
    True where a position is past the row's end. Returns (rows, heads, hd) in q's dtype; fp32 inside.
    Scores are scaled by 1/sqrt(hd), as GPT-2 does."""
    scores = (q.unsqueeze(2).float() * keys.float()).sum(-1) * q.shape[-1] ** -0.5
    weights = torch.softmax(scores.masked_fill(hidden, -math.inf), dim=-1)
    return (weights.unsqueeze(2) * values.float()).sum(-1).to(q.dtype)


def eager(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """The same attention as two batched matmuls around an fp32 softmax, for machines without a compiler."""
    scores = torch.matmul(keys, q.unsqueeze(-1)).squeeze(-1).float().mul_(q.shape[-1] ** -0.5)
    weights = torch.softmax(scores.masked_fill_(hidden, -math.inf), dim=-1).to(q.dtype)
    return torch.matmul(values, weights.unsqueeze(-1)).squeeze(-1)


class _Attention(torch.nn.Module):
    """`_summed` as a module, for `torch.export`."""

    def forward(self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        return _summed(q, keys, values, hidden)


# The sizes `prepare` compiles at. Inductor writes one kernel for every number of rows and every length,
# but picks its loop order and vectorisation from the sizes it is shown: tiny ones gave a kernel a third
# as fast. So those sizes are a typical batch, and always the same.
TYPICAL_ROWS, TYPICAL_LENGTH = (32, 40), (160, 192)

# (dtype, heads, head_dim, threads) -> the compiled kernel, called as kernel(q, keys, values, hidden)[0].
_kernels: dict[tuple[torch.dtype, int, int, int], Callable] = {}
_kernels_lock = threading.Lock()


def compiled(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """`_summed` as `prepare` compiled it for this dtype, head shape and thread count, for any number of rows."""
    kernel = _kernels.get((q.dtype, q.shape[1], q.shape[2], torch.get_num_threads()))
    if kernel is None:
        kernel = prepare(q.dtype, q.shape[1], q.shape[2])
    # The kernel is compiled for contiguous inputs and asserts their strides (`inductor.compile_graph`).
    return kernel(q.contiguous(), keys.contiguous(), values.contiguous(), hidden.contiguous())[0]


def prepare(dtype: torch.dtype, heads: int, head_dim: int) -> Callable:
    """Compile the kernel for one dtype and head shape at the current thread count (once per process),
    dynamic in rows and length only, at the typical sizes; return it.

    Compiled ahead and called without Dynamo (`inductor.compile_graph`): checked bit for bit against the
    Dynamo-compiled kernel this replaced (fp32 and bf16), so no song changed. Inductor builds a kernel for
    a fixed number of threads, so each thread count gets its own. Raises whatever export or Inductor raises
    when it cannot compile here."""
    key = (dtype, heads, head_dim, torch.get_num_threads())
    with _kernels_lock:
        if key not in _kernels:
            rows = next(r for r in TYPICAL_ROWS if r not in (heads, head_dim))
            length = next(n for n in TYPICAL_LENGTH if n not in (rows, heads, head_dim))
            example = (torch.ones(rows, heads, head_dim, dtype=dtype),
                       torch.ones(rows, heads, length, head_dim, dtype=dtype),
                       torch.ones(rows, heads, head_dim, length, dtype=dtype),
                       torch.zeros(rows, 1, length, dtype=torch.bool))
            # Rows from 1: the kernel is the same, bit for bit, as the one compiled from 2 rows up (checked on
            # fp32 and bf16, 3 head shapes, rows 1-64, lengths 32-1024), so one row is no longer sent as two.
            batch, positions = Dim("rows", min=1), Dim("length", min=2)
            _kernels[key] = compile_graph(_Attention(), example, (
                {0: batch}, {0: batch, 2: positions}, {0: batch, 3: positions}, {0: batch, 2: positions}))
        return _kernels[key]


def _compiles(dtype: torch.dtype, heads: int, head_dim: int) -> bool:
    try:
        prepare(dtype, heads, head_dim)
    except Exception as exc:  # noqa: BLE001 - inductor raises many kinds (no compiler, no write access, ...)
        log.warning("attention: compiling failed (%s)", why_not(exc))
        return False
    return True


def writing(attend: Attend) -> Step:
    """`attend` as one layer's step: row r's key and value (qkv[r, 1], qkv[r, 2], of qkv (rows, 3, heads,
    head_dim)) go into cache row r at positions[r] first, then q = qkv[:, 0] attends over rows 0..rows-1."""

    indices: dict[tuple[int, torch.device], torch.Tensor] = {}  # 0..rows-1, made once, not 12 times a step

    def step(qkv: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
             hidden: torch.Tensor | None) -> torch.Tensor:
        rows = qkv.shape[0]
        q, k, v = qkv.unbind(1)
        index = indices.get((rows, qkv.device))
        if index is None:
            index = indices[rows, qkv.device] = torch.arange(rows, device=qkv.device)
        keys[index, :, positions] = k
        values[index, :, :, positions] = v
        return attend(q, keys[:rows], values[:rows], hidden)

    return step


def choose_attention(dtype: torch.dtype, heads: int, head_dim: int, name: str | None = None,
                     device: torch.device | None = None) -> tuple[str, Step]:
    """The attention named by `name` (default $BILLIONSONGS_ATTENTION, else "auto") as (name, step function),
    ready for `heads` heads of `head_dim`. "fused" and "compiled" raise where they cannot run here; "auto"
    then falls back to the next. Fused and compiled are the CPU's: on a GPU, "auto" is eager."""
    name = (name or os.environ.get("BILLIONSONGS_ATTENTION") or "auto").strip().lower()
    if name not in CHOICES:
        raise ValueError(f"attention must be one of {', '.join(CHOICES)}, not {name!r}")
    on_cpu = device is None or device.type == "cpu"
    if name in ("fused", "compiled") and not on_cpu:
        raise ValueError(f"BILLIONSONGS_ATTENTION={name} is for the CPU; on {device} use auto or eager")
    if name == "eager" or not on_cpu:
        return "eager", writing(eager)
    if not _compiles(dtype, heads, head_dim):
        if name != "auto":
            raise RuntimeError(f"BILLIONSONGS_ATTENTION={name}, but torch.compile failed here (see the log); "
                               "install a C++ compiler or set BILLIONSONGS_ATTENTION=eager")
        log.warning("attention: using the slower eager attention")
        return "eager", writing(eager)
    if name == "compiled":
        return "compiled", writing(compiled)
    reason = fused_attention.unavailable(dtype, head_dim)
    if reason is None:
        try:
            fused_attention.prepare(heads, head_dim, writing(compiled))
            return "fused", fused_attention.fused
        except Exception as exc:  # noqa: BLE001 - inductor raises many kinds (no compiler, no write access, ...)
            reason = why_not(exc)
            (log.warning if name == "auto" else log.debug)("attention: the fused kernel cannot run here: %s", reason)
    if name == "fused":
        raise RuntimeError(f"BILLIONSONGS_ATTENTION=fused, but {reason}; use auto or compiled")
    return "compiled", writing(compiled)
