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

Attend = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


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


_summed_compiled = torch.compile(_summed, dynamic=False)

# The sizes `prepare` compiles at. Inductor writes one kernel for every number of rows and every length,
# but picks its loop order and vectorisation from the sizes it first sees: tiny ones gave a kernel a
# third as fast. So those sizes are a typical batch, and always the same.
TYPICAL_ROWS, TYPICAL_LENGTH = (32, 40), (160, 192)
RECOMPILE_LIMIT = 256  # compiled entries of the kernel per process (see `prepare`)


def compiled(q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """`_summed` as compiled by `prepare` for this dtype, head shape and thread count. Inputs must be
    inference tensors, as `GPT2.step` makes (others would compile another kernel).

    Anything that would make torch compile again here (another memory layout, a size-1 dimension, a new
    thread count) could give another kernel, which can sum in another order. So inputs are made
    contiguous, one row is sent as two, no compile may happen here, and a new thread count is compiled
    by `prepare` the same way as the first."""
    if not keys.is_inference():
        raise ValueError("compiled attention takes inference tensors (run under torch.inference_mode())")
    q = q.contiguous()
    if q.shape[0] == 1:
        return compiled(*(torch.cat([t, t]) for t in (q, keys, values, hidden)))[:1]
    try:
        with torch.compiler.set_stance("fail_on_recompile"):
            return _summed_compiled(q, keys, values, hidden)
    except RuntimeError as exc:
        if "fail_on_recompile" not in str(exc):
            raise
    prepare(q.dtype, q.shape[1], q.shape[2])
    with torch.compiler.set_stance("fail_on_recompile"):
        return _summed_compiled(q, keys, values, hidden)


def prepare(dtype: torch.dtype, heads: int, head_dim: int) -> None:
    """Compile the kernel for one dtype and head shape, dynamic in rows and length only, at the typical sizes.

    Why all this care: which kernel a song meets must not depend on what the process did before. Heads
    and head size stay static, so each model shape gets its own kernel. Torch gives equal sizes one
    symbol and would make a dimension dynamic when it changes between calls ("automatic dynamic"); both
    would let the first call's sizes, or another model loaded earlier, choose the kernel. Inference
    tensors, as `GPT2.step` passes. Torch compiles anew for each thread count, and so does this, once per
    count. Raises whatever Inductor raises when it cannot compile here."""
    rows = next(r for r in TYPICAL_ROWS if r not in (heads, head_dim))
    length = next(n for n in TYPICAL_LENGTH if n not in (rows, heads, head_dim))
    with torch.inference_mode():
        q = torch.ones(rows, heads, head_dim, dtype=dtype)
        keys = torch.ones(rows, heads, length, head_dim, dtype=dtype)
        values = torch.ones(rows, heads, head_dim, length, dtype=dtype)
        hidden = torch.zeros(rows, 1, length, dtype=torch.bool)
        for tensor, dims in ((q, (0,)), (keys, (0, 2)), (values, (0, 3)), (hidden, (0, 2))):
            for dim in dims:
                torch._dynamo.mark_dynamic(tensor, dim)
        # Each (dtype, head shape, thread count) is one more compiled entry of `_summed`. Past dynamo's limit
        # of 8 it would quietly run `_summed` eagerly, whose sums do see the batch: a process that had used
        # three models in two dtypes at two thread counts broke row invariance. So no limit that matters,
        # and reaching it fails loudly.
        with torch._dynamo.config.patch(automatic_dynamic_shapes=False, recompile_limit=RECOMPILE_LIMIT,
                                        fail_on_recompile_limit_hit=True):
            _summed_compiled(q, keys, values, hidden)


def _compiles(dtype: torch.dtype, heads: int, head_dim: int) -> bool:
    try:
        prepare(dtype, heads, head_dim)
    except Exception as exc:  # noqa: BLE001 - inductor raises many kinds (no compiler, no write access, ...)
        log.warning("attention: torch.compile failed (%s: %s)", type(exc).__name__, str(exc).splitlines()[:1])
        return False
    return True


def choose_attention(dtype: torch.dtype, heads: int, head_dim: int, name: str | None = None,
                     device: torch.device | None = None) -> tuple[str, Attend]:
    """The attention named by `name` (default $BILLIONSONGS_ATTENTION, else "auto") as (name, function),
    ready for `heads` heads of `head_dim`. "compiled" raises if this machine cannot compile; "auto" then
    falls back to "eager". The compiled kernel is the CPU's: on a GPU, "auto" is eager (batched matmuls)."""
    name = (name or os.environ.get("BILLIONSONGS_ATTENTION") or "auto").strip().lower()
    if name not in CHOICES:
        raise ValueError(f"attention must be one of {', '.join(CHOICES)}, not {name!r}")
    on_cpu = device is None or device.type == "cpu"
    if name == "compiled" and not on_cpu:
        raise ValueError(f"BILLIONSONGS_ATTENTION=compiled is for the CPU; on {device} use auto or eager")
    if name == "eager" or not on_cpu:
        return "eager", eager
    if _compiles(dtype, heads, head_dim):
        return "compiled", compiled
    if name == "compiled":
        raise RuntimeError("BILLIONSONGS_ATTENTION=compiled, but torch.compile failed here (see the log); "
                           "install a C++ compiler or set BILLIONSONGS_ATTENTION=eager")
    log.warning("attention: using the slower eager attention")
    return "eager", eager
