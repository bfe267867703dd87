"""Attention over the KV cache: both implementations compute attention, and rows never see their batch."""

import logging
import math

import pytest
import torch

from billionsongs.model import attention
from billionsongs.model.attention import choose_attention

HEADS, HEAD_DIM = 12, 64  # GPT-2's: the kernels that matter are the ones its sizes reach
PAD = 32


def _batch(rows: int, length: int, dtype: torch.dtype, seed: int = 0):
    """Random queries and caches, and each row's last position (row 0 fills the whole length)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():  # inference tensors, as GPT2.step passes
        q = torch.randn(rows, 3, HEADS, HEAD_DIM, generator=gen).to(dtype)[:, 0]  # a strided view, as in GPT2.step
        keys = torch.randn(rows, HEADS, length, HEAD_DIM, generator=gen).to(dtype)
        values = torch.randn(rows, HEADS, HEAD_DIM, length, generator=gen).to(dtype)
        last = torch.randint(0, length, (rows,), generator=gen)
        last[0] = length - 1
    return q, keys, values, last


def _hidden(last: torch.Tensor, length: int) -> torch.Tensor:
    return (torch.arange(length) > last.unsqueeze(-1)).view(-1, 1, length)


IMPLEMENTATIONS = pytest.mark.parametrize("name", ["compiled", "eager"])
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])


@IMPLEMENTATIONS
@DTYPES
def test_computes_masked_softmax_attention(name, dtype):
    attend = choose_attention(dtype, HEADS, HEAD_DIM, name)[1]
    q, keys, values, last = _batch(5, 64, dtype)
    scale = HEAD_DIM**-0.5
    with torch.inference_mode():
        got = attend(q, keys, values, _hidden(last, 64))
    for row in range(5):
        n = int(last[row]) + 1
        k, v = keys[row, :, :n].double(), values[row, :, :, :n].double()
        weights = torch.softmax((k @ q[row].double().unsqueeze(-1)).squeeze(-1) * scale, dim=-1)
        expected = (v @ weights.unsqueeze(-1)).squeeze(-1)
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(got[row].double(), expected, rtol=tolerance, atol=tolerance)


@IMPLEMENTATIONS
@DTYPES
@pytest.mark.parametrize("rows,length", [(9, 5 * PAD), (HEADS, HEAD_DIM)])  # equal sizes get one symbol in torch
def test_row_alone_equals_row_in_a_longer_batch(name, dtype, rows, length):
    """A row alone attends over its own padded length; in a batch, over the longest row's. Same bits."""
    _assert_rows_ignore_their_batch(choose_attention(dtype, HEADS, HEAD_DIM, name)[1], dtype, rows, length)


def test_many_compiled_shapes_in_one_process_keep_rows_exact():
    """Under torch.compile, past Dynamo's default limit of 8 compiled entries a new thread count silently
    ran the kernel eagerly, whose sums differ from the compiled ones: a row alone at 1 thread no longer
    matched its batch at 2. A process that has compiled many shapes (tests, benchmarks) must still get
    exact rows."""
    attend = choose_attention(torch.bfloat16, HEADS, HEAD_DIM, "compiled")[1]  # compiled before the others
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for dtype in (torch.float32, torch.bfloat16):
                for heads, head_dim in ((2, 16), (4, 64), (6, 32)):
                    choose_attention(dtype, heads, head_dim, "compiled")
    finally:
        torch.set_num_threads(previous)
    _assert_rows_ignore_their_batch(attend, torch.bfloat16, 9, 5 * PAD)  # needs one more entry at 1 thread


def _assert_rows_ignore_their_batch(attend, dtype: torch.dtype, rows: int, length: int) -> None:
    q, keys, values, last = _batch(rows, length, dtype, seed=1)
    previous = torch.get_num_threads()
    with torch.inference_mode():
        batch = attend(q, keys, values, _hidden(last, length))
        for threads in {1, previous}:
            torch.set_num_threads(threads)
            try:
                for row in range(rows):
                    own = math.ceil((int(last[row]) + 1) / PAD) * PAD
                    alone = attend(q[row:row + 1], keys[row:row + 1, :, :own].contiguous(),
                                   values[row:row + 1, ..., :own].contiguous(), _hidden(last[row:row + 1], own))
                    assert torch.equal(alone[0], batch[row]), f"row {row} changed at {threads} threads"
                    pair = attend(q[row:row + 2], keys[row:row + 2], values[row:row + 2],
                                  _hidden(last[row:row + 2], length))
                    assert torch.equal(pair[0], batch[row])
            finally:
                torch.set_num_threads(previous)


def test_unknown_name_is_refused():
    with pytest.raises(ValueError, match="attention must be one of"):
        choose_attention(torch.float32, HEADS, HEAD_DIM, "fast")


def test_name_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("BILLIONSONGS_ATTENTION", "eager")
    assert choose_attention(torch.float32, HEADS, HEAD_DIM)[0] == "eager"


def test_auto_falls_back_to_eager_when_compiling_fails(monkeypatch, caplog):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Compiler: cc is not found")

    monkeypatch.setattr(attention, "_kernels", {})  # none compiled yet in this process
    monkeypatch.setattr(torch._inductor, "standalone_compile", no_compiler)
    with caplog.at_level(logging.WARNING, logger="billionsongs.model.attention"):
        assert choose_attention(torch.float32, HEADS, HEAD_DIM, "auto")[0] == "eager"
    assert "cc is not found" in caplog.text
    with pytest.raises(RuntimeError, match="BILLIONSONGS_ATTENTION=eager"):
        choose_attention(torch.float32, HEADS, HEAD_DIM, "compiled")
