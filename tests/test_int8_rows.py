"""The VNNI int8 matmul: exact integer sums, used by the int8 engine for the heights it takes (every height
without AMX, 1 to 8 rows with it), and refused where its sums would differ."""

import logging

import pytest
import torch
import torch.nn.functional as F

from billionsongs.model import int8_rows
from billionsongs.model.quantized import int8_kernels, int8_linear, quantize_weight

# Skipped only where the CPU cannot run it; where it can, a kernel that does not build or match fails here.
pytestmark = pytest.mark.skipif(not int8_rows.buildable(), reason="the kernel needs AVX512-VNNI and AVX-512 builds")


def _shifted(values: torch.Tensor) -> torch.Tensor:
    return values.to(torch.int16).add_(128).to(torch.uint8)


@pytest.mark.parametrize(("rows", "width", "out"), [(1, 768, 2304), (2, 3072, 768), (4, 768, 50257), (3, 12, 70),
                                                    (32, 3072, 768), (64, 768, 50257), (23, 768, 130)])
def test_sums_are_exact(rows, width, out):
    assert int8_rows.prepare()  # built and checked at start-up
    gen = torch.Generator().manual_seed(rows)
    values = torch.randint(-127, 128, (rows, width), generator=gen, dtype=torch.int8)
    weight = torch.randint(-127, 128, (out, width), generator=gen, dtype=torch.int8)
    values[0], weight[0] = 127, 127  # the largest sum a row can have, past 2^24 where float32 rounds
    expected = (values.double() @ weight.double().t()).float()
    layout = int8_rows.blocked(weight)
    assert torch.equal(int8_rows.sums(_shifted(values), *layout, out), expected)
    assert torch.equal(int8_rows.sums(values, *layout, out), expected)  # rows handed signed


@pytest.mark.parametrize("limit", [None, 4], ids=["every-height", "onednn-past-4"])
def test_the_int8_kernel_gives_a_row_alone_the_bits_it_gets_in_a_batch(monkeypatch, limit):
    """Where AMX makes oneDNN's kernel faster for tall batches, this kernel takes only short ones (`max_rows`):
    a song must not change with the batch it is written in, whichever kernel each height goes to."""
    monkeypatch.setattr(int8_rows, "max_rows", lambda: limit)
    kernel = int8_kernels(torch.bfloat16)[0]
    assert kernel.name == ("int8-vnni" if limit is None else "int8-onednn-packed")
    gen = torch.Generator().manual_seed(2)
    weight, bias = 0.05 * torch.randn(3072, 768, generator=gen), torch.randn(3072, generator=gen).bfloat16()
    packed = kernel.pack(weight)
    assert packed.blocked is not None and (packed.packed is None) == (limit is None)  # no oneDNN copy unused
    x = F.gelu(2 * torch.randn(64, 768, generator=gen), approximate="tanh").bfloat16()
    batch = kernel.apply(x, packed, bias)
    for row in range(0, 64, 7):
        assert torch.equal(kernel.apply(x[row:row + 1], packed, bias), batch[row:row + 1])
    for rows in (4, 6, 13):
        assert torch.equal(kernel.apply(x[:rows], packed, bias), batch[:rows])
    plain = int8_linear(x[:1], quantize_weight(weight), bias).bfloat16()  # the one-row path it replaces
    assert torch.equal(kernel.apply(x[:1], packed, bias), plain)


@pytest.mark.parametrize("mutation", [
    ("_mm512_sub_epi32(acc[r][b], minus)", "acc[r][b]"),  # the zero point left in
    ("s < k / 4; s++", "s < k / 4 - 1; s++"),  # the last four inputs dropped
    ("_mm512_mul_ps(_mm512_mul_ps(v, _mm512_set1_ps(finish.scale[row + r])), weight_scale)",
     "_mm512_mul_ps(_mm512_mul_ps(v, weight_scale), _mm512_set1_ps(finish.scale[row + r]))"),  # scales swapped
], ids=["no-compensation", "short-sum", "rescale-order"])
def test_a_kernel_whose_sums_differ_is_refused(mutated_kernel, caplog, mutation):
    mutated_kernel(int8_rows, *mutation)
    with caplog.at_level(logging.WARNING, logger="billionsongs.model.inductor"):
        assert not int8_rows.prepare()
    assert "VNNI matmul: the kernel's bits differ" in caplog.text
    kernel = int8_kernels(torch.bfloat16)[0]
    assert kernel.name != "int8-vnni"
    packed = kernel.pack(torch.randn(64, 256))
    assert getattr(packed, "blocked", None) is None  # oneDNN's kernel (or _int_mm) for every height
