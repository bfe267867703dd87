"""The int8 MLP's middle in one kernel (rescale, GELU, quantize) hands the MLP's second layer exactly what the
three separate ops did, and a kernel that rounds differently anywhere is refused."""

import logging

import pytest
import torch

from billionsongs.model import gelu_quantize
from billionsongs.model.quantized import QuantizedRows, int8_kernels, packed_int8_available, prepare_glue

pytestmark = pytest.mark.skipif(not packed_int8_available(), reason="this torch build or CPU has no oneDNN int8 matmul")


def _mlp(dtype: torch.dtype, seed: int = 0):
    """GPT-2's MLP shapes: (768 -> 3072) and (3072 -> 768), biases in the model's dtype."""
    gen = torch.Generator().manual_seed(seed)
    fc = ((0.05 * torch.randn(3072, 768, generator=gen)).to(dtype), (0.5 * torch.randn(3072, generator=gen)).to(dtype))
    proj = ((0.02 * torch.randn(768, 3072, generator=gen)).to(dtype), (0.1 * torch.randn(768, generator=gen)).to(dtype))
    return fc, proj


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32], ids=["bf16", "fp32"])
def test_the_second_layer_gets_the_same_bits_from_the_fused_kernel(dtype):
    assert prepare_glue(dtype) and gelu_quantize.fits(3072, torch.zeros(3072, dtype=dtype))
    kernel = int8_kernels(dtype)[0]
    (w1, b1), (w2, b2) = _mlp(dtype)
    fc, proj = kernel.pack(w1), kernel.pack(w2)
    gen = torch.Generator().manual_seed(1)
    for rows in (1, 2, 3, 17, 64):
        x = (2 * torch.randn(rows, 768, generator=gen)).to(dtype)
        x[-1] = 0  # a row of zeros
        handed = kernel.gelu_to_next(x, fc, b1)
        # one row keeps the faster one-row matmul, unless int8_rows (which takes quantized rows) runs here
        assert isinstance(handed, QuantizedRows) == (rows > 1 or fc.blocked is not None)
        separate = kernel.apply(kernel.apply_gelu(x, fc, b1), proj, b2)
        assert torch.equal(kernel.apply(handed, proj, b2), separate), rows


@pytest.mark.parametrize("mutation", [
    ("at::vec::fmadd(kappa, cube, v)", "(v + kappa * cube)"),  # Inductor's GELU: no multiply-add
    ("F::loadu(sums + i) * F(scale) * F::loadu(weight_scale + i) + widen(bias + i)",  # rescale with one
     "at::vec::fmadd(F::loadu(sums + i) * F(scale), F::loadu(weight_scale + i), widen(bias + i))"),
], ids=["unfused-gelu", "fused-rescale"])
def test_a_kernel_that_rounds_differently_is_refused(mutated_kernel, caplog, mutation):
    mutated_kernel(gelu_quantize, *mutation)
    with caplog.at_level(logging.WARNING, logger="billionsongs.model.inductor"):
        assert prepare_glue(torch.bfloat16)  # the glue compiles; the fused kernel is built, checked, refused
    assert "fused GELU: the kernel's bits differ" in caplog.text
    assert not gelu_quantize.fits(3072, torch.zeros(3072, dtype=torch.bfloat16))
    kernel = int8_kernels(torch.bfloat16)[0]
    (w1, b1), _ = _mlp(torch.bfloat16)
    handed = kernel.gelu_to_next(torch.randn(4, 768).bfloat16(), kernel.pack(w1), b1)
    assert handed.dtype == torch.float32  # the separate ops
