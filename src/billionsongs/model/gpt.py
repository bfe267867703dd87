"""GPT-2 inference with a preallocated KV cache, written so each row's numbers ignore its batch.

Why not `transformers`' forward: we need (1) a cache whose rows come and go as songs end and new ones
start (continuous batching), and (2) results per row that are bit-identical whatever else is in the
batch. CPU BLAS picks different kernels for different row counts, so fp32 `x @ W` for a row changes in
the last bits with batch size; a sampled token can then flip and the song diverges.
`choose_row_tile` probes the backend once and, where plain GEMM is not row-invariant, runs it in
fixed-height row tiles so every row always meets the same kernel.

Rows sit at different positions, so attention (PyTorch's fused CPU kernel, 2.5x the speed of
matmul+softmax here) runs over the longest row's keys with later keys masked. Reductions over a length
under one SIMD width take a different code path, so the attended length is always rounded up to a
multiple of `ATTENTION_PAD` (32): a row then gets the same bits alone or next to a longer song
(checked by the batch-invariance tests). Layer norm and GELU are per row already.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from billionsongs.model.loading import GPT2Config

ROW_TILE = 16
ATTENTION_PAD = 32


def _row_invariant(tile: int | None, weight: torch.Tensor) -> bool:
    """Does row r of linear(x, weight) equal linear(x[r:r+1], weight) for all batch heights?"""
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(67, weight.shape[1], generator=gen).to(weight.dtype)
    ref = _tiled_linear(x[:1], weight, tile)
    for rows in (2, 3, 8, 17, 33, 67):
        for threads in {1, torch.get_num_threads()}:
            previous = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                out = _tiled_linear(x[:rows].flip(0), weight, tile)[-1:]
            finally:
                torch.set_num_threads(previous)
            if not torch.equal(out, ref):
                return False
    return True


def _tiled_linear(x: torch.Tensor, weight: torch.Tensor, tile: int | None) -> torch.Tensor:
    if tile is None or x.shape[0] == tile:
        return F.linear(x, weight)
    pad = -x.shape[0] % tile
    if pad:
        x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
    return torch.cat([F.linear(part, weight) for part in x.split(tile)])[: x.shape[0] - pad]


def choose_row_tile(weight: torch.Tensor) -> int | None:
    """None when plain GEMM is row-invariant on this backend/dtype, else the smallest tile that is."""
    for tile in (None, ROW_TILE, 1):
        if _row_invariant(tile, weight):
            return tile
    raise RuntimeError("no batch-invariant matmul found on this backend")


@dataclass
class KVCache:
    """Keys and values for up to `rows` songs, preallocated to the context length (rounded up)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    def move(self, src: torch.Tensor, dst: torch.Tensor, length: int) -> None:
        """Copy rows `src` into rows `dst` (the first `length` positions), to close gaps left by ended songs."""
        for buf in (*self.keys, *self.values):
            buf[dst, :, :length] = buf[src, :, :length]


class GPT2:
    """GPT-2 forward for decoding one token per row per step."""

    def __init__(self, config: GPT2Config, state_dict: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32):
        self.config = config
        self.dtype = dtype
        sd = {k: v.to(dtype) for k, v in state_dict.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
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
        self.row_tile = choose_row_tile(self.layers[0]["c_fc"][0])

    def linear(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        out = _tiled_linear(x, weight, self.row_tile)
        return out if bias is None else out + bias

    def new_cache(self, rows: int) -> KVCache:
        c = self.config
        length = -(-c.n_positions // ATTENTION_PAD) * ATTENTION_PAD
        shape = (rows, c.n_head, length, c.n_embd // c.n_head)
        return KVCache(
            [torch.zeros(shape, dtype=self.dtype) for _ in range(c.n_layer)],
            [torch.zeros(shape, dtype=self.dtype) for _ in range(c.n_layer)],
        )

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed token i at positions[i] for rows 0..n-1 of the cache; return float32 logits (n, vocab)."""
        c = self.config
        rows = tokens.shape[0]
        heads, head_dim = c.n_head, c.n_embd // c.n_head
        eps = c.layer_norm_epsilon
        length = -(-(int(positions.max()) + 1) // ATTENTION_PAD) * ATTENTION_PAD
        row_index = torch.arange(rows)
        visible = (torch.arange(length) <= positions.unsqueeze(-1)).view(rows, 1, 1, length)
        x = self.wte[tokens] + self.wpe[positions]
        for layer, keys, values in zip(self.layers, cache.keys, cache.values, strict=True):
            h = F.layer_norm(x, (c.n_embd,), *layer["ln_1"], eps)
            q, k, v = self.linear(h, *layer["c_attn"]).view(rows, 3, heads, head_dim).unbind(1)
            keys[row_index, :, positions] = k
            values[row_index, :, positions] = v
            y = F.scaled_dot_product_attention(q.unsqueeze(2), keys[:rows, :, :length], values[:rows, :, :length],
                                               attn_mask=visible).reshape(rows, c.n_embd)
            x = x + self.linear(y, *layer["c_proj"])
            h = F.layer_norm(x, (c.n_embd,), *layer["ln_2"], eps)
            x = x + self.linear(F.gelu(self.linear(h, *layer["c_fc"]), approximate="tanh"), *layer["mlp_proj"])
        x = F.layer_norm(x, (c.n_embd,), *self.ln_f, eps)
        return self.linear(x, self.wte).float()
