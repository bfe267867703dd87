"""Small graphs compiled ahead of time by TorchInductor and called directly, without TorchDynamo.

Why not `torch.compile`: every call of a compiled function goes through Dynamo's frame hooks and guard
checks (130-190 µs a call on an AVX2 EPYC, more than the small kernels here take), and its guards are what
could silently compile another kernel mid-song. Exporting the graph once (`torch.export`, with the sizes
that vary marked dynamic) and compiling it with Inductor alone (`torch._inductor.standalone_compile`, its
API for compiling ahead and calling without Dynamo, the one vLLM uses) gives the same Inductor kernel with
nothing between a call and it. Used by `attention.py` and by int8's quantize/rescale glue (`quantized.py`).
"""

import logging
from collections.abc import Callable
from pathlib import Path

import torch

log = logging.getLogger(__name__)


def compile_graph(module: torch.nn.Module, example: tuple[torch.Tensor, ...], dynamic_shapes: tuple) -> Callable:
    """`module` exported at `example` with `dynamic_shapes` (as `torch.export.export` takes them) and
    compiled by Inductor for the current thread count. The result is called with tensors laid out like
    the example's (contiguous) and returns a tuple. No guards: it asserts sizes and strides (an
    AssertionError), but not dtypes, so callers key their kernels on every dtype they compiled for. Raises
    whatever export or Inductor raises where it cannot compile (no C++ compiler, no writable cache)."""
    program = torch.export.export(module, example, dynamic_shapes=dynamic_shapes)
    return torch._inductor.standalone_compile(program.graph_module, list(example), dynamic_shapes="from_graph")


def why_not(exc: Exception) -> str:
    """One line for a log saying why `compile_graph` failed: Inductor's messages run to pages."""
    return f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0]}"


def checked_kernel(source: Path, arguments: list[str], matches: Callable[[Callable], bool], name: str,
                   instead: str) -> Callable | None:
    """A hand-written C++ kernel (`extern "C" void kernel(...)` in `source`, taking `arguments`) built by
    Inductor's own toolchain (its compiler, flags and at::vec headers; the library cached on disk), returned
    only if `matches(kernel)`: such kernels must reproduce other code's bits exactly, and the check on this
    machine is what says they do. Else None, with a warning naming `name` and what is used `instead`."""
    try:
        from torch._inductor.codecache import CppPythonBindingsCodeCache

        kernel = CppPythonBindingsCodeCache.load_pybinding(arguments, source.read_text())
        if matches(kernel):
            return kernel
        log.warning("%s: the kernel's bits differ from the code it replaces here; %s used", name, instead)
    except Exception as exc:  # noqa: BLE001 - inductor raises many kinds (no compiler, no write access, ...)
        log.warning("%s: the kernel could not be built (%s); %s used", name, why_not(exc), instead)
    return None
