"""Attention over the KV cache: every implementation writes this step's keys and values and computes
attention, rows never see their batch, and fused and compiled agree bit for bit."""

import logging
import math

import pytest
import torch

from billionsongs.model import attention, fused_attention
from billionsongs.model.attention import choose_attention

HEADS, HEAD_DIM = 12, 64  # GPT-2's: the kernels that matter are the ones its sizes reach
PAD = 32


def _batch(rows: int, length: int, dtype: torch.dtype, seed: int = 0):
    """This step's queries, keys and values, caches (two rows to spare) and each row's position (row 0 at
    the last one the length holds)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.inference_mode():  # inference tensors, as GPT2.step passes
        qkv = torch.randn(rows, 3, HEADS, HEAD_DIM, generator=gen).to(dtype)
        keys = torch.randn(rows + 2, HEADS, length, HEAD_DIM, generator=gen).to(dtype)
        values = torch.randn(rows + 2, HEADS, HEAD_DIM, length, generator=gen).to(dtype)
        positions = torch.randint(0, length, (rows,), generator=gen)
        positions[0] = length - 1
    return qkv, keys, values, positions


def _hidden(positions: torch.Tensor, length: int) -> torch.Tensor:
    return (torch.arange(length) > positions.unsqueeze(-1)).view(-1, 1, length)


def _run(step, qkv, keys, values, positions):
    """One layer's step on copies of the caches: (attention, keys, values) after it."""
    keys, values = keys.clone(), values.clone()
    with torch.inference_mode():
        return step(qkv, keys, values, positions, _hidden(positions, keys.shape[2])), keys, values


def _fused_or_skip(dtype: torch.dtype) -> None:
    reason = fused_attention.unavailable(dtype, HEAD_DIM)
    if reason:
        pytest.skip(f"the fused kernel cannot run here: {reason}")


IMPLEMENTATIONS = pytest.mark.parametrize("name", ["fused", "compiled", "eager"])
DTYPES = pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])


def _choose(name: str, dtype: torch.dtype):
    if name == "fused":
        _fused_or_skip(dtype)
    return choose_attention(dtype, HEADS, HEAD_DIM, name)[1]


@IMPLEMENTATIONS
@DTYPES
def test_writes_the_step_and_computes_masked_softmax_attention(name, dtype):
    qkv, keys, values, positions = _batch(5, 64, dtype)
    got, new_keys, new_values = _run(_choose(name, dtype), qkv, keys, values, positions)
    keys, values = keys.clone(), values.clone()  # normal tensors, written below as the step should have
    scale = HEAD_DIM**-0.5
    for row in range(5):
        n = int(positions[row]) + 1
        keys[row, :, n - 1], values[row, :, :, n - 1] = qkv[row, 1], qkv[row, 2]
        assert torch.equal(new_keys[row], keys[row]) and torch.equal(new_values[row], values[row])
        k, v = keys[row, :, :n].double(), values[row, :, :, :n].double()
        weights = torch.softmax((k @ qkv[row, 0].double().unsqueeze(-1)).squeeze(-1) * scale, dim=-1)
        expected = (v @ weights.unsqueeze(-1)).squeeze(-1)
        tolerance = 1e-5 if dtype == torch.float32 else 2e-2
        torch.testing.assert_close(got[row].double(), expected, rtol=tolerance, atol=tolerance)
    assert torch.equal(new_keys[5:], keys[5:]) and torch.equal(new_values[5:], values[5:]), "rows past the batch"


@IMPLEMENTATIONS
@DTYPES
@pytest.mark.parametrize("rows,length", [(9, 5 * PAD), (HEADS, HEAD_DIM)])  # equal sizes get one symbol in torch
def test_row_alone_equals_row_in_a_longer_batch(name, dtype, rows, length):
    """A row alone attends over its own padded length; in a batch, over the longest row's. Same bits."""
    _assert_rows_ignore_their_batch(_choose(name, dtype), dtype, rows, length)


@pytest.mark.parametrize("rows,length", [(1, PAD), (2, 2 * PAD), (17, 9 * PAD), (64, 6 * PAD), (3, 1024)])
def test_fused_gives_the_compiled_bits_and_cache(rows, length):
    """Fused replaces compiled only because it gives the same songs: the same attention, bit for bit."""
    _fused_or_skip(torch.bfloat16)
    batch = _batch(rows, length, torch.bfloat16, seed=rows)
    fused = _run(choose_attention(torch.bfloat16, HEADS, HEAD_DIM, "fused")[1], *batch)
    compiled = _run(choose_attention(torch.bfloat16, HEADS, HEAD_DIM, "compiled")[1], *batch)
    for ours, theirs in zip(fused, compiled, strict=True):
        assert torch.equal(ours, theirs)


def test_auto_prefers_fused_and_falls_back_to_compiled_where_its_bits_differ(monkeypatch, caplog):
    _fused_or_skip(torch.bfloat16)
    assert choose_attention(torch.bfloat16, HEADS, HEAD_DIM, "auto")[0] == "fused"
    monkeypatch.setattr(fused_attention, "_checked", set())
    monkeypatch.setattr(attention, "compiled", lambda *args: attention.eager(*args))  # rounds differently
    with caplog.at_level(logging.WARNING, logger="billionsongs.model.attention"):
        assert choose_attention(torch.bfloat16, HEADS, HEAD_DIM, "auto")[0] == "compiled"
    assert "bits differ" in caplog.text
    with pytest.raises(RuntimeError, match="BILLIONSONGS_ATTENTION=fused"):
        choose_attention(torch.bfloat16, HEADS, HEAD_DIM, "fused")


def test_fused_is_refused_where_it_cannot_run():
    assert choose_attention(torch.float32, HEADS, HEAD_DIM, "auto")[0] == "compiled"
    with pytest.raises(RuntimeError, match="bfloat16"):
        choose_attention(torch.float32, HEADS, HEAD_DIM, "fused")


def test_many_compiled_shapes_in_one_process_keep_rows_exact():
    """Under torch.compile, past Dynamo's default limit of 8 compiled entries a new thread count silently
    ran the kernel eagerly, whose sums differ from the compiled ones: a row alone at 1 thread no longer
    matched its batch at 2. A process that has compiled many shapes (tests, benchmarks) must still get
    exact rows."""
    step = choose_attention(torch.bfloat16, HEADS, HEAD_DIM, "compiled")[1]  # compiled before the others
    previous = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for dtype in (torch.float32, torch.bfloat16):
                for heads, head_dim in ((2, 16), (4, 64), (6, 32)):
                    choose_attention(dtype, heads, head_dim, "compiled")
    finally:
        torch.set_num_threads(previous)
    _assert_rows_ignore_their_batch(step, torch.bfloat16, 9, 5 * PAD)  # needs one more entry at 1 thread


def _assert_rows_ignore_their_batch(step, dtype: torch.dtype, rows: int, length: int) -> None:
    qkv, keys, values, positions = _batch(rows, length, dtype, seed=1)
    batch = _run(step, qkv, keys, values, positions)[0]
    previous = torch.get_num_threads()
    for threads in {1, previous}:
        torch.set_num_threads(threads)
        try:
            for row in range(rows):
                own = math.ceil((int(positions[row]) + 1) / PAD) * PAD
                alone = _run(step, qkv[row:row + 1], keys[row:row + 1, :, :own].contiguous(),
                             values[row:row + 1, ..., :own].contiguous(), positions[row:row + 1])[0]
                assert torch.equal(alone[0], batch[row]), f"row {row} changed at {threads} threads"
                pair = _run(step, qkv[row:row + 2], keys[row:row + 2], values[row:row + 2], positions[row:row + 2])[0]
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
