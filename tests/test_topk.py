"""The top-k kernel returns torch.topk's values and indices bit for bit, ties in torch's order, so sampling
with it writes the same songs."""

import logging

import pytest
import torch

from billionsongs.model import topk
from billionsongs.model.sampling import SamplingSettings, sample

DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])


def _logits(rows: int, n: int, dtype: torch.dtype, levels: int | None, seed: int) -> torch.Tensor:
    """Logits like a model's (normal, scale 3) or, with `levels`, drawn from that many values, so the top k
    is full of ties; some masked to -inf as the chant guard masks tokens."""
    gen = torch.Generator().manual_seed(seed)
    if levels is None:
        x = torch.randn(rows, n, generator=gen) * 3
    else:
        x = torch.randint(0, levels, (rows, n), generator=gen) / 8
    x = x.to(dtype)
    x[:, 3::11] = -torch.inf
    return x


def _same(got: tuple[torch.Tensor, torch.Tensor], expected: tuple[torch.Tensor, torch.Tensor]) -> bool:
    as_bits = torch.int16 if expected[0].dtype == torch.bfloat16 else torch.int32
    return (torch.equal(got[0].view(as_bits), expected[0].view(as_bits))
            and torch.equal(got[1], expected[1]))


def test_the_kernel_builds_and_passes_its_check_here():
    assert topk.available(), "gcc and Inductor's headers are on every machine the project runs on"


@DTYPES
@pytest.mark.parametrize("levels", [None, 5, 40, 300], ids=["normal", "5-levels", "40-levels", "300-levels"])
@pytest.mark.parametrize(("rows", "n", "k"), [(1, 50257, 40), (32, 50257, 40), (64, 4096, 40), (7, 4099, 50),
                                              (5, 2560, 40), (3, 1000, 1), (4, 70, 1)])
def test_equals_torch_topk_ties_included(dtype, levels, rows, n, k):
    assert topk.available()
    x = _logits(rows, n, dtype, levels, seed=rows * n + k)
    assert _same(topk.top_k(x, k), torch.topk(x, k, dim=-1, sorted=True))


@DTYPES
def test_nan_comes_first_as_in_torch_topk(dtype):
    x = _logits(4, 4096, dtype, 20, seed=1)
    x[0, 100::500] = torch.nan  # fewer NaNs than k: they lead, then the largest numbers
    x[1, :] = torch.nan  # all NaN
    x[2, ::2] = torch.nan  # more NaNs than k
    got = topk.top_k(x, 40)
    assert _same(got, torch.topk(x, 40, dim=-1, sorted=True))
    assert got[0].isnan().any(dim=1).tolist() == [True, True, True, False]


@DTYPES
def test_a_strided_view_gives_torch_topk_result(dtype):
    x = _logits(6, 8192, dtype, 30, seed=6)[::2, ::2]
    assert _same(topk.top_k(x, 40), torch.topk(x, 40, dim=-1, sorted=True))


def test_what_torch_sorts_another_way_goes_to_torch(monkeypatch):
    """Where torch.topk takes another algorithm (k * 64 > n), k is the whole row, or the logits are not a
    batch of rows, torch.topk itself answers."""
    def kernel_called(*args):
        raise AssertionError("the kernel must not run here")

    monkeypatch.setattr(topk, "_run", kernel_called)
    x = _logits(3, 500, torch.bfloat16, 6, seed=2)
    for k in (40, 500):
        assert _same(topk.top_k(x, k), torch.topk(x, k, dim=-1, sorted=True))
    row = _logits(1, 4096, torch.bfloat16, 6, seed=2)[0]
    assert _same(topk.top_k(row, 40), torch.topk(row, 40, dim=-1, sorted=True))


def test_a_heap_that_breaks_ties_the_other_way_is_refused(mutated_kernel, caplog):
    """The start-up check is what keeps songs: a kernel differing only in which of two equal children moves
    up (the same top k values, tied indices in another order) must be caught and torch.topk kept."""
    mutated_kernel(topk, "if (before(first[child], first[child - 1])) child--;",
                   "if (!before(first[child - 1], first[child])) child--;")
    with caplog.at_level(logging.WARNING, logger="billionsongs.model.inductor"):
        assert not topk.available()
    assert "top-k: the kernel's bits differ" in caplog.text
    x = _logits(8, 4096, torch.bfloat16, 5, seed=7)
    assert _same(topk.top_k(x, 40), torch.topk(x, 40, dim=-1, sorted=True))


@DTYPES
def test_sampling_picks_the_tokens_torch_topk_would(dtype):
    x = _logits(64, 50257, dtype, 60, seed=3)
    u = torch.rand(64, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    settings = SamplingSettings()
    values, indices = torch.topk(x, settings.top_k, dim=-1, sorted=True)
    cdf = torch.cumsum(torch.softmax(values.double(), dim=-1), dim=-1)
    choice = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).clamp_(max=settings.top_k - 1)
    assert torch.equal(sample(x, u, settings), indices.gather(-1, choice).squeeze(-1))
