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

`BILLIONSONGS_ATTENTION` picks the implementation: `compiled` (needs a C++ compiler; fails loudly if
compilation fails), `eager` (two batched matmuls, no compiler needed, slower), or `auto` (default:
compiled where it compiles, else eager with a warning). The two round differently, so, like the
precision, a fleet of workers should not mix them: a song is whatever the first worker wrote.
"""

import logging
import math
import os
from collections.abc import Callable

import torch

log = logging.getLogger(__name__)

CHOICES = ("auto", "compiled", "eager")

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, float], torch.Tensor]


def _summed(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor,
            scale: float) -> torch.Tensor:
    """q (rows, heads, hd); keys (rows, heads, L, hd); values (rows, heads, hd, L); hidden (rows, 1, L) is
    True where a position is past the row's end. Returns (rows, heads, hd) in q's dtype; fp32 inside."""
    scores = (q.unsqueeze(2).float() * keys.float()).sum(-1) * scale
    weights = torch.softmax(scores.masked_fill(hidden, -math.inf), dim=-1)
    return (weights.unsqueeze(2) * values.float()).sum(-1).to(q.dtype)


def eager(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor,
          scale: float) -> torch.Tensor:
    """The same attention as two batched matmuls around an fp32 softmax, for machines without a compiler."""
    scores = torch.matmul(keys, q.unsqueeze(-1)).squeeze(-1).float().mul_(scale)
    weights = torch.softmax(scores.masked_fill_(hidden, -math.inf), dim=-1).to(q.dtype)
    return torch.matmul(values, weights.unsqueeze(-1)).squeeze(-1)


_summed_compiled = torch.compile(_summed, dynamic=True)


def compiled(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor,
             scale: float) -> torch.Tensor:
    """`_summed` compiled for dynamic sizes. Torch compiles another kernel for other memory layouts and for
    a size-1 dimension, and another kernel can sum in another order; so inputs are made contiguous and
    one row is sent as two: a song then meets the same kernel alone as in a batch."""
    q = q.contiguous()
    if q.shape[0] == 1:
        return _summed_compiled(*(torch.cat([t, t]) for t in (q, keys, values, hidden)), scale)[:1]
    return _summed_compiled(q, keys, values, hidden, scale)


def _compiles(dtype: torch.dtype) -> bool:
    """Compile now, once per dtype, on sizes that are all different: torch gives equal sizes one symbol
    ("duck sizing"), so a first call where, say, rows == heads would compile a kernel for that case
    only, and another one for the next batch. Inference tensors, as `GPT2.step` passes."""
    rows, heads, length, head_dim = 2, 3, 32, 5
    with torch.inference_mode():
        q = torch.ones(rows, heads, head_dim, dtype=dtype)
        keys = torch.ones(rows, heads, length, head_dim, dtype=dtype)
        values = torch.ones(rows, heads, head_dim, length, dtype=dtype)
        hidden = torch.zeros(rows, 1, length, dtype=torch.bool)
        try:
            compiled(q, keys, values, hidden, 0.5)
        except Exception as exc:  # noqa: BLE001 - inductor raises many kinds (no compiler, no write access, ...)
            log.warning("attention: torch.compile failed (%s: %s)", type(exc).__name__, str(exc).splitlines()[:1])
            return False
    return True


def choose_attention(dtype: torch.dtype, name: str | None = None) -> tuple[str, Attend]:
    """The attention named by `name` (default $BILLIONSONGS_ATTENTION, else "auto") as (name, function).
    "compiled" raises if this machine cannot compile; "auto" then falls back to "eager"."""
    name = (name or os.environ.get("BILLIONSONGS_ATTENTION") or "auto").strip().lower()
    if name not in CHOICES:
        raise ValueError(f"attention must be one of {', '.join(CHOICES)}, not {name!r}")
    if name == "eager":
        return "eager", eager
    if _compiles(dtype):
        return "compiled", compiled
    if name == "compiled":
        raise RuntimeError("BILLIONSONGS_ATTENTION=compiled, but torch.compile failed here (see the log); "
                           "install a C++ compiler or set BILLIONSONGS_ATTENTION=eager")
    log.warning("attention: using the slower eager attention")
    return "eager", eager
