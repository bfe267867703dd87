"""Row-invariant linear kernels: the probe must reject kernels whose rows see their batch."""

import pytest
import torch
import torch.nn.functional as F

from billionsongs.model.linear import (
    GEMM,
    ONEDNN_TILE,
    ONEDNN_TILED,
    LinearKernel,
    choose_kernel,
    is_row_invariant,
    packed_kernel_available,
)
from billionsongs.model.quantized import int8_kernel

INT8 = int8_kernel(torch.float32)


def _weight(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return (0.02 * torch.randn(768, 3072, generator=gen)).to(dtype), torch.zeros(768, dtype=dtype)


def test_probe_rejects_a_kernel_whose_rows_depend_on_batch_height():
    weight, bias = _weight(torch.float32)
    leaky = LinearKernel("leaky", lambda w: w, lambda x, w, b: F.linear(x, w, b) + 1e-3 * x.shape[0])
    assert not is_row_invariant(leaky, weight, bias)


def test_probe_rejects_a_kernel_that_fails_on_this_build():
    def broken(x, w, b):
        raise RuntimeError("not supported on this CPU")

    assert not is_row_invariant(LinearKernel("broken", lambda w: w, broken), *_weight(torch.float32))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_chosen_kernel_gives_each_row_its_own_answer(dtype):
    weight, bias = _weight(dtype)
    kernel = choose_kernel([(weight, bias)])
    packed = kernel.pack(weight)
    x = F.gelu(torch.randn(40, 3072, generator=torch.Generator().manual_seed(1))).to(dtype)
    alone = torch.cat([kernel.apply(row, packed, bias) for row in x.split(1)])
    for rows in (2, 5, 16, 40):
        assert torch.equal(kernel.apply(x[:rows], packed, bias), alone[:rows])
    torch.testing.assert_close(alone.float(), F.linear(x, weight, bias).float(), rtol=2e-2, atol=2e-2)


def test_single_row_is_sent_as_two(monkeypatch):
    """A one-row call must not reach the backend's one-row kernel (it rounds differently)."""
    heights = []
    real_linear = F.linear

    def spy(x, w, b=None):
        heights.append(x.shape[0])
        return real_linear(x, w, b)

    monkeypatch.setattr(torch.nn.functional, "linear", spy)
    weight, bias = _weight(torch.float32)
    out = GEMM.apply(torch.randn(1, 3072), weight, bias)
    assert heights == [2] and out.shape == (1, 768)


@pytest.mark.skipif(not packed_kernel_available(torch.float32), reason="this torch build has no oneDNN linear")
def test_tiled_onednn_kernel_sends_the_backend_one_height_only(monkeypatch):
    """Where oneDNN picks its kernel by height (AMX CPUs in bf16), a fixed height is what keeps rows apart."""
    weight, bias = _weight(torch.float32)
    packed = ONEDNN_TILED.pack(weight)
    x = F.gelu(torch.randn(ONEDNN_TILE + 6, 3072, generator=torch.Generator().manual_seed(3)))
    heights = []
    real = torch.ops.mkldnn._linear_pointwise

    def spy(x, *args):
        heights.append(x.shape[0])
        return real(x, *args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
    outs = [ONEDNN_TILED.apply(x[:rows], packed, bias) for rows in (1, ONEDNN_TILE, ONEDNN_TILE + 6)]
    assert heights == [ONEDNN_TILE] * 4
    assert [out.shape[0] for out in outs] == [1, ONEDNN_TILE, ONEDNN_TILE + 6]
    assert torch.equal(outs[2][:1], outs[0]) and torch.equal(outs[2][:ONEDNN_TILE], outs[1])
    torch.testing.assert_close(outs[2], F.linear(x, weight, bias), rtol=1e-4, atol=1e-4)
    monkeypatch.undo()
    assert is_row_invariant(ONEDNN_TILED, weight, bias)


def test_int8_linear_is_close_to_the_float_one_and_exact_per_row():
    """Int8 rounds (about 1% of a typical output here), but a row's integer sums never see its batch, so
    one row alone, sent as one row, equals that row in any batch."""
    gen = torch.Generator().manual_seed(2)
    weight, bias = 0.02 * torch.randn(768, 3072, generator=gen), 0.1 * torch.randn(768, generator=gen)
    packed = INT8.pack(weight)
    assert packed.values.dtype == torch.int8 and packed.values.shape == (768, 3072)
    x = F.gelu(torch.randn(40, 3072, generator=gen), approximate="tanh")
    alone = torch.cat([INT8.apply(row, packed, bias) for row in x.split(1)])
    for rows in (2, 5, 17, 40):
        assert torch.equal(INT8.apply(x[:rows], packed, bias), alone[:rows])
    exact = F.linear(x, weight, bias)
    assert ((alone - exact).norm() / exact.norm()).item() < 0.02
    assert choose_kernel([(weight, bias)], [INT8]) is INT8
    gelu = INT8.apply_gelu(x, packed, bias)
    assert gelu.dtype == torch.float32 and torch.equal(gelu, F.gelu(alone, approximate="tanh"))
    assert int8_kernel(torch.bfloat16).apply(x, packed, bias).dtype == torch.bfloat16


def test_int8_leaves_a_float32_input_untouched():
    x = torch.randn(3, 64)
    before = x.clone()
    INT8.apply(x, INT8.pack(torch.randn(8, 64)), None)
    assert torch.equal(x, before)


def test_quantizing_a_weight_leaves_it_untouched():
    weight = torch.randn(8, 64)
    before = weight.clone()
    INT8.pack(weight)
    assert torch.equal(weight, before)
