"""Padding a batch with copies of its first row.

Kernels that take a minimum number of rows (oneDNN's packed linear kernels) or a fixed
height get the missing rows as copies of row 0: every kernel here is row-invariant, so the real rows
come out the same, and a copy of a real row keeps the padding finite and typical."""

import torch


def with_rows(t: torch.Tensor, n: int) -> torch.Tensor:
    """`t` with exactly `n` rows: its first `n`, or all of them followed by copies of row 0."""
    if t.shape[0] == n:
        return t
    if t.shape[0] > n:
        return t[:n]
    return torch.cat([t, t[:1].expand(n - t.shape[0], *t.shape[1:])])
