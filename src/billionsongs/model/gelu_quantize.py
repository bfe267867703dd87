"""The int8 MLP's middle as one kernel (`gelu_quantize.cpp`): rescale the first layer's integer sums, apply
GPT-2's tanh GELU and quantize the rows for the second layer, bit for bit as the three ops it replaces.

Why: between the MLP's two int8 matmuls the 3072-wide activations went through three passes and dispatches:
the compiled rescale to float32, aten's GELU and the compiled quantize. At batch 32 on the Zen 4 they took
44 + 116 + 50 µs a layer, 2.5 ms of a 47 ms step (torch.profiler, benchmarks/RESULTS.md 2026-12-02). Here
each row is rescaled, GELU'd and quantized while it sits in L1.

Why it changes no song: Inductor's own GELU differs from aten's in the last bit of ~0.6% of outputs, because
aten is built with GCC's default -ffp-contract=fast, which fuses one multiply and add of the GELU into a
multiply-add, and Inductor builds with fusing off. This kernel is built like Inductor's (so the rescale rounds
after every op, as the eager ops do) and writes aten's one multiply-add out. (A function attribute asking GCC
not to fuse the rescale alone was ignored after inlining: seen in the disassembly, and by the check.)
`prepare` checks the result against the three ops on random rows and uses the kernel only where it matches
exactly.
"""

import threading
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from billionsongs.model.inductor import checked_kernel

SOURCE = Path(__file__).with_name("gelu_quantize.cpp")
_ARGUMENTS = ["const float*", "const float*", "const float*", "const void*", "void*", "float*", "float*",
              "int64_t", "int64_t", "int64_t", "int64_t", "int64_t"]
WIDTH = 32  # rows must be a multiple of this wide: the kernel has no tail loop
BIASES = (torch.bfloat16, torch.float32)

_kernel: Callable | None = None  # built and checked (`prepare`), or None
_tried = False
_lock = threading.Lock()
_NOWHERE = torch.empty(0)  # `_run`'s activations argument when they are not kept: never written

# The three ops the kernel replaces, as `quantized` runs them: ((sums, scale, weight_scale, bias) ->
# float32 rescaled rows, and float32 rows -> (int8 values, or uint8 shifted by 128, and scales)).
Rescale = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
Quantize = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def fits(width: int, bias: torch.Tensor | None) -> bool:
    """Is the kernel ready (`prepare`), and can it take rows this wide with this bias?"""
    return _kernel is not None and bias is not None and bias.dtype in BIASES and width % WIDTH == 0


def gelu_quantized(sums: torch.Tensor, scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor,
                   signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, scales (rows, 1)) of quantize(gelu(sums * scale * weight_scale + bias)): values int8 where
    `signed`, else uint8 shifted by 128."""
    return _run(_kernel, sums, scale, weight_scale, bias, None, signed)


def _run(kernel: Callable, sums: torch.Tensor, scale: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor,
         activations: torch.Tensor | None, signed: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """`gelu_quantized`, also writing the GELU's float32 output into `activations` where given."""
    rows, n = sums.shape
    values = torch.empty(rows, n, dtype=torch.int8 if signed else torch.uint8)
    out_scale = torch.empty(rows, 1)
    kept = activations if activations is not None else _NOWHERE
    kernel(sums.contiguous(), scale.contiguous(), weight_scale.contiguous(), bias.contiguous(), values, out_scale,
           kept, rows, n, int(bias.dtype == torch.bfloat16), int(activations is not None), int(signed))
    return values, out_scale


def prepare(rescale: Rescale, quantize: Quantize) -> bool:
    """Build the kernel and check it against `rescale`, GELU and `quantize`, once per process (~5 s cold,
    Inductor caches the library on disk). Where either fails, a warning says why, once, and the three ops
    stay in use. Returns whether the kernel is used."""
    global _kernel, _tried
    with _lock:
        if not _tried:
            _kernel = checked_kernel(SOURCE, _ARGUMENTS, lambda kernel: _matches(kernel, rescale, quantize),
                                     "int8's fused GELU", "the separate ops")
            _tried = True
    return _kernel is not None


@torch.inference_mode()
def _matches(kernel: Callable, rescale: Rescale, quantize: Quantize) -> bool:
    """The GELU's float32 output and the quantized rows the same as the separate ops' on each row, for 2 to 64 rows of
    GPT-2's MLP width and both bias dtypes, with sums and scales of a real layer's sizes. The float32 output
    is compared too because quantizing hides most one-ulp differences: Inductor's GELU differs from aten's in
    ~0.6% of outputs but changed the quantized rows of only about one row in a hundred."""
    gen = torch.Generator().manual_seed(5)
    # 256 wide: rows that narrow are always handed over shifted (`quantized.signed_rows`), wider ones may be signed.
    for rows, n, bias_dtype in ((2, 3072, torch.bfloat16), (64, 3072, torch.bfloat16), (33, 3072, torch.float32),
                                (5, 1024, torch.bfloat16), (3, 256, torch.float32)):
        sums = torch.randint(-40000, 40000, (rows, n), generator=gen).float()
        scale = torch.rand(rows, 1, generator=gen) * 1e-2 + 1e-4
        weight_scale = torch.rand(n, generator=gen) * 1e-3 + 1e-5
        bias = torch.randn(n, generator=gen).to(bias_dtype)
        rescaled = rescale(sums.clone(), scale, weight_scale, bias)  # a clone: the eager rescale works in place
        # Row by row: over a whole batch, aten splits the work among threads in pieces that need not end on its
        # vector width (5 or 7 threads, say), and a piece's last values then take its scalar loop, another tanh.
        # The kernel always takes the vector code, as aten does for any one row.
        expected_activations = torch.cat([F.gelu(row, approximate="tanh") for row in rescaled.split(1)])
        expected = quantize(expected_activations)
        activations = torch.empty(rows, n)
        got = _run(kernel, sums, scale, weight_scale, bias, activations, expected[0].dtype == torch.int8)
        if not (torch.equal(activations, expected_activations) and torch.equal(got[0], expected[0])
                and torch.equal(got[1], expected[1])):
            return False
    return True
