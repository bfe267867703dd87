"""Attention and this step's cache writes in one hand-written AVX-512 kernel (`attention.cpp`), bf16.

Why: at batch 32-64 on GPT-2 124M, attention and the cache writes were the biggest cost after the linear
layers (torch.profiler, int8 batch 64: 12.4 ms attention, 3.0 ms writes, of a 50 ms step). Inductor's
attention kernel does more arithmetic than the memory takes to read, and writing a value into a cache kept
(head_dim, length) per head touches one cache line per number, away from any read. The kernel writes each
row's key and value just before it reads that row's cache, and does the same sums in fewer instructions:
1.4-1.6x the writes plus Inductor's kernel, batch 64, 192-288 positions (benchmarks/RESULTS.md).

Why it changes no song: every sum adds the same terms in the same order as Inductor's kernel (the comment
at the top of attention.cpp shows how), and it is built by Inductor's own C++ toolchain, with the flags
and at::vec code Inductor's kernels use. `prepare` checks that on this machine: the kernel is used only
where it returns the compiled attention's bits exactly, cache included, on a batch of random rows.
"""

import threading
from collections.abc import Callable
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("attention.cpp")
CHUNK = 32  # the kernel's unit along positions and head dimensions
_ARGUMENTS = ["const at::BFloat16*", "at::BFloat16*", "at::BFloat16*", "const int64_t*", "at::BFloat16*",
              "int64_t", "int64_t", "int64_t", "int64_t", "float"]

_kernel: Callable | None = None
_checked: set[tuple[int, int]] = set()  # (heads, head_dim) checked against the compiled attention
_lock = threading.Lock()


def unavailable(dtype: torch.dtype, head_dim: int) -> str | None:
    """Why the kernel cannot run this model here, or None where it can (before `prepare` checks it)."""
    from torch._inductor.cpu_vec_isa import pick_vec_isa

    if dtype != torch.bfloat16:
        return f"it is for bfloat16, not {str(dtype).removeprefix('torch.')}"
    if head_dim % CHUNK:
        return f"it needs a head dimension that is a multiple of {CHUNK}, not {head_dim}"
    if "CPU_CAPABILITY_AVX512" not in pick_vec_isa().build_macro():  # what Inductor compiles the kernel for
        return "it needs AVX-512"
    return None


def fused(qkv: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, positions: torch.Tensor,
          hidden: torch.Tensor | None = None) -> torch.Tensor:
    """Write row r's key and value (qkv[r, 1], qkv[r, 2]) at positions[r] of cache row r, then attend from
    qkv[r, 0] over positions 0..positions[r]; returns (rows, heads, head_dim). `hidden` is not needed: the
    kernel masks by position. The caller keeps every position below the cache's length (`KVCache.reserve`)."""
    rows, _, heads, head_dim = qkv.shape
    length = keys.shape[2]
    if not (keys.is_contiguous() and values.is_contiguous() and keys.dtype == values.dtype == qkv.dtype
            == torch.bfloat16 and positions.dtype == torch.int64 and length % CHUNK == 0 and keys.shape[0] >= rows
            and keys.shape[1:] == (heads, length, head_dim) and values.shape[1:] == (heads, head_dim, length)):
        raise ValueError("fused attention needs contiguous bf16 caches of at least `rows` rows shaped like qkv's "
                         f"heads, a length that is a multiple of {CHUNK} and int64 positions")
    out = torch.empty(rows, heads, head_dim, dtype=qkv.dtype)
    _kernel(qkv.contiguous(), keys, values, positions.contiguous(), out, rows, heads, length, head_dim,
            head_dim**-0.5)
    return out


def prepare(heads: int, head_dim: int, reference: Callable) -> None:
    """Build the kernel (once per process; Inductor caches the library on disk, ~3 s cold) and check it
    against `reference` (the compiled attention behind the same cache writes) for this head shape.
    Raises RuntimeError with the reason when it cannot be used."""
    global _kernel
    with _lock:
        if _kernel is None:
            from torch._inductor.codecache import CppPythonBindingsCodeCache

            _kernel = CppPythonBindingsCodeCache.load_pybinding(_ARGUMENTS, SOURCE.read_text())
        if (heads, head_dim) not in _checked:
            if not _matches(reference, heads, head_dim):
                raise RuntimeError("the hand-written kernel's bits differ from the compiled attention's here")
            _checked.add((heads, head_dim))


@torch.inference_mode()
def _matches(reference: Callable, heads: int, head_dim: int) -> bool:
    """Same output and cache as `reference`, bit for bit, for 1 to 64 rows at 32 to 512 positions (rows at
    random positions; row 0 at the last), ~0.5 s. Outputs are rounded to bf16, which hides most one-ulp
    differences of the fp32 sums: a kernel with one multiply-add fused (one rounding fewer) differed in 2 of
    49,152 outputs at 64 rows, none at 3. Hence big batches; `tests/test_attention.py` checks more."""
    gen = torch.Generator().manual_seed(7)
    for rows, length in ((1, 32), (3, 96), (64, 192), (64, 288), (64, 512)):
        qkv = torch.randn(rows, 3, heads, head_dim, generator=gen).to(torch.bfloat16)
        keys = torch.randn(rows + 1, heads, length, head_dim, generator=gen).to(torch.bfloat16)
        values = torch.randn(rows + 1, heads, head_dim, length, generator=gen).to(torch.bfloat16)
        positions = torch.randint(0, length, (rows,), generator=gen)
        positions[0] = length - 1
        hidden = (torch.arange(length) > positions[:, None]).view(rows, 1, length)
        ours_k, ours_v = keys.clone(), values.clone()
        expected = reference(qkv, keys, values, positions, hidden)
        got = fused(qkv, ours_k, ours_v, positions)
        if not (torch.equal(got, expected) and torch.equal(ours_k, keys) and torch.equal(ours_v, values)):
            return False
    return True
