"""Turning logits into a token with a caller-supplied uniform draw per row."""

from dataclasses import dataclass

import torch

from billionsongs.model.topk import top_k


@dataclass(frozen=True)
class SamplingSettings:
    """The original Billion Songs defaults: temperature 1, top-k 40, no nucleus cut; plus the chant guard
    (`chant.py`): no more than `max_chant_words` words in a row drawn from one or two words (0 = off)."""

    temperature: float = 1.0
    top_k: int = 40
    top_p: float = 1.0
    max_chant_words: int = 8

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError("temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0 (0 disables it)")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must be in (0, 1]")
        if self.max_chant_words < 0:
            raise ValueError("max_chant_words must be >= 0 (0 disables the chant guard)")


def sample(logits: torch.Tensor, u: torch.Tensor, settings: SamplingSettings) -> torch.Tensor:
    """Inverse-CDF sampling: row i picks the token where its CDF first exceeds u[i].

    Works per row in float64 so a row's choice depends only on its own logits and its own draw.
    """
    if settings.temperature == 0:
        return logits.argmax(dim=-1)
    k = settings.top_k if 0 < settings.top_k < logits.shape[-1] else logits.shape[-1]
    values, indices = top_k(logits, k)
    probs = torch.softmax(values.double() / settings.temperature, dim=-1)
    if settings.top_p < 1.0:
        before = torch.cumsum(probs, dim=-1) - probs
        probs = probs.masked_fill(before >= settings.top_p, 0.0)
    cdf = torch.cumsum(probs, dim=-1)
    target = (u.double() * cdf[:, -1]).unsqueeze(-1)
    choice = torch.searchsorted(cdf, target, right=True).clamp_(max=k - 1)
    return indices.gather(-1, choice).squeeze(-1)
