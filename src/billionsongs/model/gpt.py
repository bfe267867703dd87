"""GPT-2 inference with a preallocated KV cache, written so each row's numbers ignore its batch.

Why not `transformers`' forward: we need (1) a cache we can compact when a song ends, and (2) results
per row that are bit-identical whatever else is in the batch. CPU BLAS picks different kernels for
different row counts, so fp32 `x @ W` for a row changes in the last bits with batch size; a sampled
token can then flip and the song diverges. `BatchInvariantLinear` probes the backend once and, where
plain GEMM is not row-invariant, runs it in fixed-height row tiles so every row always meets the same
kernel. Attention, layer norm and GELU are per-row already; all rows of a batch share one position
(every song starts at the end-of-text token), so attention shapes never depend on other rows.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from billionsongs.model.loading import GPT2Config

ROW_TILE = 16


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
    """Keys and values for `rows` songs, preallocated up to the context length."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]
    length: int = 0

    def keep(self, rows: torch.Tensor) -> None:
        """Drop finished songs by moving the surviving rows to the front (one copy per compaction)."""
        n = rows.numel()
        for buf in (*self.keys, *self.values):
            buf[:n, :, : self.length] = buf[rows, :, : self.length]


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

    def new_cache(self, rows: int, length: int | None = None) -> KVCache:
        c = self.config
        shape = (rows, c.n_head, length or c.n_positions, c.n_embd // c.n_head)
        return KVCache(
            [torch.zeros(shape, dtype=self.dtype) for _ in range(c.n_layer)],
            [torch.zeros(shape, dtype=self.dtype) for _ in range(c.n_layer)],
        )

    @torch.inference_mode()
    def step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Feed one token per row at position `cache.length`; return float32 logits (rows, vocab)."""
        c = self.config
        rows, pos = tokens.shape[0], cache.length
        heads, head_dim = c.n_head, c.n_embd // c.n_head
        eps = c.layer_norm_epsilon
        x = self.wte[tokens] + self.wpe[pos]
        for layer, keys, values in zip(self.layers, cache.keys, cache.values, strict=True):
            h = F.layer_norm(x, (c.n_embd,), *layer["ln_1"], eps)
            q, k, v = self.linear(h, *layer["c_attn"]).view(rows, 3, heads, head_dim).unbind(1)
            keys[:rows, :, pos] = k
            values[:rows, :, pos] = v
            scores = torch.matmul(keys[:rows, :, : pos + 1], q.unsqueeze(-1)).squeeze(-1)
            weights = torch.softmax(scores.float() / math.sqrt(head_dim), dim=-1).to(self.dtype)
            y = torch.matmul(weights.unsqueeze(-2), values[:rows, :, : pos + 1]).reshape(rows, c.n_embd)
            x = x + self.linear(y, *layer["c_proj"])
            h = F.layer_norm(x, (c.n_embd,), *layer["ln_2"], eps)
            x = x + self.linear(F.gelu(self.linear(h, *layer["c_fc"]), approximate="tanh"), *layer["mlp_proj"])
        cache.length = pos + 1
        x = F.layer_norm(x, (c.n_embd,), *self.ln_f, eps)
        return self.linear(x, self.wte).float()
