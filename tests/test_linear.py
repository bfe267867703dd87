"""Row-invariant linear kernels: the probe must reject kernels whose rows see their batch."""

import logging

import pytest
import torch
import torch.nn.functional as F

from billionsongs.model import int8_rows, quantized
from billionsongs.model.linear import (
    GEMM,
    ONEDNN_BANDED,
    ONEDNN_BANDS,
    LinearKernel,
    choose_kernel,
    is_row_invariant,
    packed_kernel_available,
)
from billionsongs.model.quantized import (
    int8_kernel,
    int8_kernels,
    packed_int8_available,
    prepare_glue,
    quantize_weight,
)

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
@pytest.mark.parametrize(("kernel", "band"), list(zip(ONEDNN_BANDED, ONEDNN_BANDS, strict=True)),
                         ids=[kernel.name for kernel in ONEDNN_BANDED])
def test_banded_onednn_kernel_sends_the_backend_heights_within_its_band(kernel, band, monkeypatch):
    """Where oneDNN picks its kernel by height (AMX CPUs in bf16), a band of heights that meet the same code
    is what keeps rows apart: short batches are padded up to its bottom, tall ones split at its top."""
    low, high = band
    weight, bias = _weight(torch.float32)
    packed = kernel.pack(weight)
    x = F.gelu(torch.randn(2 * high + 1, 3072, generator=torch.Generator().manual_seed(3)))
    heights = []
    real = torch.ops.mkldnn._linear_pointwise

    def spy(x, *args):
        heights.append(x.shape[0])
        return real(x, *args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", spy)
    sizes = (1, low + 1, high, 2 * high + 1)
    outs = [kernel.apply(x[:rows], packed, bias) for rows in sizes]
    assert heights == [low, low + 1, high, high, high, low]
    assert [out.shape[0] for out in outs] == list(sizes)
    assert torch.equal(outs[3][:1], outs[0]) and torch.equal(outs[3][:high], outs[2])
    torch.testing.assert_close(outs[3], F.linear(x, weight, bias), rtol=1e-4, atol=1e-4)
    monkeypatch.undo()
    assert is_row_invariant(kernel, weight, bias)


def test_each_layer_shape_gets_the_first_kernel_row_invariant_for_it(tiny_model_dir, monkeypatch):
    """A kernel that fails the probe for one shape only is kept for the others."""
    from billionsongs.model import gpt as gpt_module
    from billionsongs.model.loading import load_model

    loaded = load_model(str(tiny_model_dir))
    deep = 4 * loaded.config.n_embd  # the MLP projection's input

    def row_by_row(x, w, b):
        return torch.cat([F.linear(row, w, b) for row in x.split(1)])

    def sees_batch_if_deep(x, w, b):
        return row_by_row(x, w, b) + (1e-3 * x.shape[0] if x.shape[1] == deep else 0)

    picky = LinearKernel("picky", lambda w: w, sees_batch_if_deep)
    exact = LinearKernel("row-by-row", lambda w: w, row_by_row)
    real_choose = gpt_module.choose_kernel
    monkeypatch.setattr(gpt_module, "choose_kernel", lambda weights, _=None: real_choose(weights, [picky, exact]))
    model = gpt_module.GPT2(loaded.config, loaded.state_dict)
    assert model.kernel_name == "picky (c_attn/c_proj/c_fc), row-by-row (mlp_proj)"
    assert model.lm_head.kernel is picky


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


@pytest.mark.skipif(not packed_int8_available(), reason="this torch build or CPU has no oneDNN int8 matmul")
@pytest.mark.parametrize("limit", [None, 4], ids=["vnni-kernel-where-it-runs", "onednn-past-4-rows"])
def test_packed_int8_kernel_gives_the_plain_int8_kernels_bits_at_every_height(monkeypatch, limit):
    """Which of the two int8 kernels a machine picks must never change a song. Rows of large, nearly equal
    values push some integer sums past 2^24 to values float32 cannot hold, so the conversion rounds. With a
    limit, oneDNN's matmul takes the taller batches, as on an AMX CPU (`int8_rows.max_rows`)."""
    monkeypatch.setattr(int8_rows, "max_rows", lambda: limit)
    packed_kernel, plain_kernel = int8_kernels(torch.bfloat16)
    vnni_everywhere = int8_rows.prepare() and limit is None
    assert packed_kernel.name == ("int8-vnni" if vnni_everywhere else "int8-onednn-packed")
    assert plain_kernel.name == "int8-dynamic"
    gen = torch.Generator().manual_seed(3)
    weight, bias = 0.02 * torch.randn(768, 3072, generator=gen), 0.1 * torch.randn(768, generator=gen)
    weight[:8] = 0.05
    weight[:8, ::7] = 0.049
    x = F.gelu(torch.randn(64, 3072, generator=gen), approximate="tanh").bfloat16()
    x[:4] = 3.0
    x[:4, ::5] = 2.9
    packed, plain = packed_kernel.pack(weight), plain_kernel.pack(weight)
    # Activation rows are rounded as weight rows are (largest magnitude ÷ 127 each), so this is the int8 input.
    sums = torch._int_mm(quantize_weight(x[:4].float()).values, plain.values[:8].t()).long()
    assert ((sums > 2**24) & (sums.float().long() != sums)).any()
    for rows in (2, 3, 4, 17, 64):
        for apply in ("apply", "apply_gelu"):
            ours = getattr(packed_kernel, apply)(x[:rows], packed, bias)
            assert torch.equal(ours, getattr(plain_kernel, apply)(x[:rows], plain, bias)), (rows, apply)
    assert choose_kernel([(weight, bias)], int8_kernels(torch.bfloat16)).name == packed_kernel.name


def _large_sums(width: int, seed: int) -> tuple[torch.Tensor, quantized.PackedInt8Weight, torch.Tensor]:
    """8 rows quantized as the engine hands them to oneDNN here, a packed weight, and their exact sums: large
    positive values in the first rows and weights, so that sums of wide rows pass 2^24 (where float32 skips
    integers)."""
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(48, width, generator=gen)
    weight[:4] = 4 + torch.rand(4, width, generator=gen)
    packed = quantized.pack_int8_weight(weight)
    x = torch.randn(8, width, generator=gen)
    x[:2] = 2 + torch.rand(2, width, generator=gen)
    rounded, _ = quantized._rounded_rows(x)
    rows = rounded.to(torch.int8) if quantized.signed_rows(width) else rounded.add(128).to(torch.uint8)
    return rows, packed, (rounded.double() @ quantize_weight(weight).values.double().t()).float()


@pytest.mark.skipif(not packed_int8_available(), reason="this torch build or CPU has no oneDNN int8 matmul")
@pytest.mark.parametrize("width", [768, 3072])
def test_onednn_int8_sums_are_exact_in_the_form_the_start_up_check_picked(width):
    """On the AMX Xeon, rows handed shifted came out 2 off here; the check must have picked signed rows."""
    rows, packed, expected = _large_sums(width, seed=width)
    assert torch.equal(quantized.packed_int8_sums(rows, packed), expected)


@pytest.mark.skipif(not packed_int8_available(), reason="this torch build or CPU has no oneDNN int8 matmul")
@pytest.mark.parametrize("mode", ["shifted", "signed"])
def test_narrow_rows_stay_shifted_and_exact_whatever_the_check_picked(monkeypatch, mode):
    monkeypatch.setattr(quantized, "_onednn_int8_input", lambda: mode)
    rows, packed, expected = _large_sums(quantized.EXACT_SHIFTED_WIDTH - 6, seed=1)
    assert rows.dtype == torch.uint8 and quantized.signed_rows(quantized.EXACT_SHIFTED_WIDTH + 2) == (mode == "signed")
    assert torch.equal(quantized.packed_int8_sums(rows, packed), expected)


def _int8_outputs(kernel: LinearKernel, dtype: torch.dtype) -> list[torch.Tensor]:
    """The kernel's outputs for GPT-2's layer shapes (biases in the model's dtype, and none, as the output
    layer has) at several heights, through both of its entry points."""
    gen = torch.Generator().manual_seed(5)
    outs = []
    for out_features, in_features in ((2304, 768), (768, 3072), (37, 5)):
        weight = (0.02 * torch.randn(out_features, in_features, generator=gen)).to(dtype)
        packed = kernel.pack(weight)
        for bias in ((0.1 * torch.randn(out_features, generator=gen)).to(dtype), None):
            for rows in (1, 2, 3, 17, 64):
                x = (2 * torch.randn(rows, in_features, generator=gen)).to(dtype)
                x[0] = 0  # a row of zeros: its scale is the smallest float, not 0
                # float32 rows too: the MLP's projection gets the GELU's float32 output in a bf16 model
                outs += [kernel.apply(x, packed, bias), kernel.apply_gelu(x, packed, bias),
                         kernel.apply(x.float(), packed, bias)]
    return outs


@pytest.mark.skipif(not packed_int8_available(), reason="this torch build or CPU has no oneDNN int8 matmul")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_compiled_int8_glue_gives_the_eager_ops_bits(monkeypatch, dtype):
    """The quantize/rescale glue around oneDNN's int8 matmul is compiled where it can be; a machine that
    cannot compile runs the eager ops, and its songs must be the same."""
    kernel = int8_kernels(dtype)[0]
    monkeypatch.setattr(quantized, "_glue", {})  # this dtype's kernels only (Inductor's disk cache makes it quick)
    assert prepare_glue(dtype)
    used = set()
    for key, compiled_kernel in list(quantized._glue.items()):
        def counted(*args, key=key, compiled_kernel=compiled_kernel):
            used.add(key)
            return compiled_kernel(*args)
        monkeypatch.setitem(quantized._glue, key, counted)
    compiled = _int8_outputs(kernel, dtype)
    # The 5-wide rows are always shifted; GPT-2's are signed where the start-up check picked that (`signed_rows`).
    forms = {False, quantized.signed_rows(768)}
    assert used == {("quantize", d, s) for d in (dtype, torch.float32) for s in forms} | {
        ("rescale", dtype, dtype), ("rescale", dtype, None), ("rescale", torch.float32, dtype)}
    monkeypatch.setattr(quantized, "_glue", {})
    eager = _int8_outputs(kernel, dtype)
    assert all(torch.equal(a, b) for a, b in zip(compiled, eager, strict=True))
    assert is_row_invariant(kernel, *_weight(dtype))


@pytest.mark.skipif(not packed_int8_available(), reason="this torch build or CPU has no oneDNN int8 matmul")
def test_int8_glue_stays_eager_when_compiling_fails(monkeypatch, caplog):
    def no_compiler(*args, **kwargs):
        raise RuntimeError("Compiler: cc is not found")

    monkeypatch.setattr(quantized, "_glue", {})
    monkeypatch.setattr(quantized, "_glue_failed", set())
    monkeypatch.setattr(torch._inductor, "standalone_compile", no_compiler)
    with caplog.at_level(logging.WARNING, logger="billionsongs.model.quantized"):
        assert not prepare_glue(torch.bfloat16)
        assert not prepare_glue(torch.bfloat16)  # not tried, nor warned about, again
    assert caplog.text.count("Compiler: cc is not found") == 1 and not quantized._glue
    kernel = int8_kernels(torch.bfloat16)[0]
    assert is_row_invariant(kernel, *_weight(torch.bfloat16))


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
