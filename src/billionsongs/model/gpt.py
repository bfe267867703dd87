"""GPT-2 inference with a growing KV cache, written so each row's numbers ignore its batch.

Why not `transformers`' forward: we need (1) a cache whose rows come and go as songs end and new ones
start (continuous batching), and (2) results per row that are bit-identical whatever else is in the
batch. Linear layers get that from `linear.choose_kernel`, which probes the backend once per layer shape
(or from exact integer sums, in int8: `quantized.py`); attention from `attention.py`, whose reductions
run over one row's own cache.

Rows sit at different positions, so attention runs over the longest row's keys with later keys masked.
Reductions over a length under one SIMD width take a different code path, so the attended length is
always rounded up to a multiple of `ATTENTION_PAD` (32): a row then gets the same bits alone or next to
a longer song (checked by the batch-invariance tests). Layer norm and GELU are per row already.
"""

import threading

import torch
import torch.nn.functional as F

from billionsongs.model.attention import choose_attention
from billionsongs.model.linear import PackedLinear, choose_kernel
from billionsongs.model.loading import GPT2Config
from billionsongs.model.quantized import int8_available, int8_kernels, prepare_glue
from billionsongs.model.rows import with_rows

ATTENTION_PAD = 32
LINEARS = ("c_attn", "c_proj", "c_fc", "mlp_proj")


class KVCache:
    """Keys (rows, heads, length, head_dim) and values (rows, heads, head_dim, length) per layer: each
    attention product then sums over contiguous memory (`attention.py`).

    The views are exactly as long as the attention needs (the longest row, rounded up to
    `ATTENTION_PAD`) and grow as songs get longer. Why not one buffer of the full context, sliced: `bmm`
    copies a sliced (non-contiguous) operand every call, which cost 19% of a batch-32 step. Why two
    flat buffers that the views take turns in, kept from one batch to the next (`GPT2.release`), rather
    than a fresh tensor per growth: each growth then zero-filled 24 new tensors, and past a few MB each
    came from fresh pages that fault on first touch: 4.3 ms of a 44 ms batch-64 step (torch.profiler,
    256-token songs); reusing the memory measured 1.03-1.05x at batch 32 and 64 (GPT-2 124M shape,
    bf16, old and new engine alternating in separate processes, two sessions of 3 pairs). A buffer too
    small for a growth is replaced by one twice the size needed (at most `capacity`), so memory tracks
    the songs' length, as a GPU, which commits memory when it is allocated, needs. Rows are reused
    without clearing: masked positions get probability exactly 0, and 0 times a finite stale value is 0;
    positions a growth adds are zeroed, so nothing unwritten (and possibly not finite) is ever read.
    """

    @torch.inference_mode()
    def __init__(self, rows: int, layers: int, heads: int, head_dim: int, dtype: torch.dtype,
                 device: torch.device | None = None, capacity: int = 1024,
                 buffers: list[torch.Tensor] | None = None):
        """`buffers`: memory a cache of the same model released (`GPT2.release`), used where large enough."""
        self.rows, self.layers, self.heads, self.head_dim = rows, layers, heads, head_dim
        self.dtype, self.device = dtype, device
        self.capacity = padded_length(capacity)
        self.buffers = (list(buffers or []) + [torch.empty(0, dtype=dtype, device=device)] * 2)[:2]
        self.length = 0
        self.keys, self.values = self._views(self.buffers[0], 0)

    def _size(self, length: int) -> int:
        return 2 * self.layers * self.rows * self.heads * self.head_dim * length

    def _views(self, buffer: torch.Tensor, length: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Every layer's keys and values at `length`, packed from the start of `buffer`."""
        block = self._size(length) // (2 * self.layers)
        keys, values = [], []
        for layer in range(self.layers):
            start = 2 * layer * block
            keys.append(buffer[start:start + block].view(self.rows, self.heads, length, self.head_dim))
            values.append(buffer[start + block:start + 2 * block].view(self.rows, self.heads, self.head_dim, length))
        return keys, values

    @torch.inference_mode()
    def reserve(self, positions: int) -> None:
        """Make room for `positions` tokens per row (rounded up to `ATTENTION_PAD`)."""
        length = padded_length(positions)
        if length <= self.length:
            return
        if length > self.capacity:
            raise ValueError(f"the cache holds {self.capacity} positions per row, not {positions}")
        self._relayout(length)

    @torch.inference_mode()
    def shrink(self, positions: int) -> None:
        """Keep only the first `positions` (rounded up) when that at least halves the cache. Attention reads
        every position of the cache each step, so in a batch that runs on (a worker's), rows that follow a
        long song must not go on paying for its length."""
        length = padded_length(positions)
        if length <= self.length // 2:
            self._relayout(length)

    def _relayout(self, length: int) -> None:
        """Move the views to the other buffer at `length` positions: those kept are copied, new ones zeroed."""
        self.buffers.reverse()
        if self.buffers[0].numel() < self._size(length):
            size = self._size(min(self.capacity, 2 * length))
            self.buffers[0] = torch.empty(size, dtype=self.dtype, device=self.device)
        keys, values = self._views(self.buffers[0], length)
        kept = min(self.length, length)
        for new_k, new_v, old_k, old_v in zip(keys, values, self.keys, self.values, strict=True):
            new_k[:, :, :kept].copy_(old_k[:, :, :kept])
            new_k[:, :, kept:].zero_()
            new_v[..., :kept].copy_(old_v[..., :kept])
            new_v[..., kept:].zero_()
        self.keys, self.values, self.length = keys, values, length

    @torch.inference_mode()
    def move(self, src: torch.Tensor, dst: torch.Tensor, length: int) -> None:
        """Copy rows `src` into rows `dst` (the first `length` positions), to close gaps left by ended songs."""
        for keys, values in zip(self.keys, self.values, strict=True):
            keys[dst, :, :length] = keys[src, :, :length]
            values[dst, ..., :length] = values[src, ..., :length]


def padded_length(positions: int) -> int:
    """`positions` rounded up to a multiple of `ATTENTION_PAD`."""
    return -(-positions // ATTENTION_PAD) * ATTENTION_PAD


class GPT2:
    """GPT-2 forward for decoding one token per row per step."""

    def __init__(self, config: GPT2Config, state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
                 int8: bool = False, device: torch.device | None = None):
        """`int8`: linear layers in int8 (`quantized.py`), everything else in `dtype`; all of it on `device`
        (default CPU)."""
        self.device = device or torch.device("cpu")
        self._spare: list[torch.Tensor] = []  # a released cache's buffers (`release`)
        self._spare_lock = threading.Lock()
        if int8 and not int8_available(self.device):
            raise ValueError(f"int8 linear layers run on the CPU only, not on {self.device} (use bfloat16 there)")
        self.config = config
        self.dtype = dtype
        sd = {k: v.to(device=self.device, dtype=dtype) for k, v in state_dict.items()
              if not k.endswith((".attn.bias", ".attn.masked_bias"))}
        self.wte = sd["wte.weight"].contiguous()
        self.wpe = sd["wpe.weight"].contiguous()
        self.layers = []
        for i in range(config.n_layer):
            p = f"h.{i}."
            self.layers.append(
                {
                    "ln_1": (sd[p + "ln_1.weight"], sd[p + "ln_1.bias"]),
                    "ln_2": (sd[p + "ln_2.weight"], sd[p + "ln_2.bias"]),
                    # HF stores Conv1D weights as (in, out); F.linear wants (out, in).
                    "c_attn": (sd[p + "attn.c_attn.weight"].t().contiguous(), sd[p + "attn.c_attn.bias"]),
                    "c_proj": (sd[p + "attn.c_proj.weight"].t().contiguous(), sd[p + "attn.c_proj.bias"]),
                    "c_fc": (sd[p + "mlp.c_fc.weight"].t().contiguous(), sd[p + "mlp.c_fc.bias"]),
                    "mlp_proj": (sd[p + "mlp.c_proj.weight"].t().contiguous(), sd[p + "mlp.c_proj.bias"]),
                }
            )
        self.ln_f = (sd["ln_f.weight"], sd["ln_f.bias"])
        # One probe per layer shape (same in every block): on an AMX Xeon the tallest row-invariant call height
        # depends on it. The output layer is not probed (a second or more at GPT-2's vocabulary): it has c_fc's
        # depth and was row-invariant with c_fc's kernel wherever measured (Zen 4, AVX2 EPYC, AMX Xeon; the
        # batch-invariance tests cover it).
        candidates = int8_kernels(dtype) if int8 else None
        if int8:
            prepare_glue(dtype)
        kernels = {name: choose_kernel([self.layers[0][name]], candidates) for name in LINEARS}
        for layer in self.layers:
            for name in LINEARS:
                layer[name] = PackedLinear.pack(kernels[name], *layer[name])
        self.lm_head = PackedLinear.pack(kernels["c_fc"], self.wte, None)
        # The MLP's GELU goes to its second layer in the form that layer's kernel reads (int8: quantized) only
        # when both layers took the same kernel; each layer shape is probed on its own.
        self.mlp_handoff = kernels["c_fc"] is kernels["mlp_proj"]
        self.attention_name, self.attend = choose_attention(dtype, config.n_head, config.n_embd // config.n_head,
                                                            device=self.device)
        # Steps of fewer rows than the linear kernels take are padded once, up front, with copies of row 0,
        # rather than in every call. Attention and the cache get only the real rows: each extra row would be
        # one more row of the cache read.
        self.linear_rows = max(kernel.min_rows for kernel in kernels.values())

    @property
    def kernel_name(self) -> str:
        """The linear kernel, or the kernel of each layer where they differ ("k1 (c_attn/c_fc), k2 (...)")."""
        by_kernel: dict[str, list[str]] = {}
        for name in LINEARS:
            by_kernel.setdefault(self.layers[0][name].kernel.name, []).append(name)
        if len(by_kernel) == 1:
            return next(iter(by_kernel))
        return ", ".join(f"{kernel} ({'/'.join(names)})" for kernel, names in by_kernel.items())

    def new_cache(self, rows: int, capacity: int | None = None) -> KVCache:
        """A cache for `rows` songs of up to `capacity` positions (default: the model's context), in the
        memory of the last released one where it is large enough."""
        c = self.config
        with self._spare_lock:
            spare, self._spare = self._spare, []
        return KVCache(rows, c.n_layer, c.n_head, c.n_embd // c.n_head, self.dtype, self.device,
                       capacity or c.n_positions, spare)

    def release(self, cache: KVCache) -> None:
        """`cache` is done with: the next `new_cache` reuses its memory (already faulted in). Kept until
        then, so a generating process holds about twice its largest cache between batches."""
        with self._spare_lock:
            self._spare = cache.buffers

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed token i at positions[i] for rows 0..n-1 of the cache; return logits (n, vocab) in the model's
        dtype (sampling takes its top-k there and converts only those: half the work of converting all).
        `positions` may sit on the CPU whatever the device: the cache's length is read from it.

        Fewer rows than the linear kernels take are padded with copies of row 0, which attention and the
        cache never see. Every kernel is row-invariant, so row 0 is the same padded or not."""
        c = self.config
        rows = tokens.shape[0]
        height = max(rows, self.linear_rows)
        if height > rows:
            tokens, positions = with_rows(tokens, height), with_rows(positions, height)
        heads, head_dim = c.n_head, c.n_embd // c.n_head
        eps = c.layer_norm_epsilon
        cache.reserve(int(positions.max()) + 1)
        length = cache.length
        positions = positions.to(self.device)
        hidden = None  # positions past each row's own, for the attention that needs them as a mask
        if self.attention_name != "fused":
            hidden = (torch.arange(length, device=self.device) > positions[:rows, None]).view(rows, 1, length)
        row_positions = positions[:rows]
        x = self.wte[tokens] + self.wpe[positions]
        for layer, keys, values in zip(self.layers, cache.keys, cache.values, strict=True):
            h = F.layer_norm(x, (c.n_embd,), *layer["ln_1"], eps)
            qkv = layer["c_attn"](h).view(height, 3, heads, head_dim)[:rows]
            y = self.attend(qkv, keys, values, row_positions, hidden)
            x = x + layer["c_proj"](with_rows(y.reshape(rows, c.n_embd), height))
            h = F.layer_norm(x, (c.n_embd,), *layer["ln_2"], eps)
            wide = layer["c_fc"].gelu_to_next(h) if self.mlp_handoff else layer["c_fc"].gelu(h)
            x = x + layer["mlp_proj"](wide)
        x = F.layer_norm(x, (c.n_embd,), *self.ln_f, eps)
        return self.lm_head(x)[:rows]
