"""Batched, deterministic song generation.

A batch of song IDs advances together, one forward pass per step, every row starting from the
end-of-text token. Row i's token at step t is drawn with the uniform `uniforms(id_i, t)`, and the
forward pass is row-invariant (see `gpt.py`), so a song is the same alone or in any batch.

Rows that finish early: when a song emits end-of-text its row is removed from the batch and the KV
cache is compacted, so from the next step on it costs nothing. The batch then shrinks and runs at
lower efficiency until its longest song ends; `GenerationStats.row_utilisation` reports how much
(benchmarks/generation.py prints it).
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from billionsongs.lyrics.document import derive_title, split_document
from billionsongs.model.gpt import GPT2
from billionsongs.model.loading import LoadedModel, load_model
from billionsongs.model.rng import uniforms
from billionsongs.model.sampling import SamplingSettings, sample

TOO_LONG = "too long"
EMPTY = "empty"


@dataclass
class Song:
    """A generated song; `error` is set (and title/lyrics empty) when generation produced no song."""

    id: int
    title: str
    lyrics: str
    model: str
    tokens: int
    error: str | None = None

    def as_dict(self) -> dict:
        return {"id": self.id, "title": self.title, "lyrics": self.lyrics, "model": self.model,
                "tokens": self.tokens, "error": self.error}


@dataclass
class GenerationStats:
    """Counts from one `generate` call, for benchmarks and logs."""

    steps: int = 0
    row_steps: int = 0
    batch_rows: int = 0
    seconds: float = 0.0
    batches: int = 0
    tokens: int = field(default=0)

    @property
    def row_utilisation(self) -> float:
        """Share of row-slots that did useful work: 1.0 means no row waited on a longer song."""
        return self.row_steps / max(1, self.batch_rows)


class Generator:
    """Holds one loaded model and writes songs for IDs."""

    def __init__(self, model: LoadedModel | str | None = None, *, dtype: torch.dtype = torch.float32,
                 settings: SamplingSettings | None = None, max_tokens: int | None = None):
        self.loaded = model if isinstance(model, LoadedModel) else load_model(model)
        self.gpt = GPT2(self.loaded.config, self.loaded.state_dict, dtype=dtype)
        self.settings = settings or SamplingSettings()
        limit = self.loaded.config.n_positions
        self.max_length = min(limit, max_tokens + 1) if max_tokens else limit
        self.stats = GenerationStats()

    @property
    def model_name(self) -> str:
        return self.loaded.name

    def generate(self, song_ids: Iterable[int], batch_size: int = 16,
                 on_token: Callable[[int, int], None] | None = None) -> list[Song]:
        """Songs for `song_ids`, in the order given; duplicates are generated once."""
        ids = list(song_ids)
        unique = list(dict.fromkeys(ids))
        done: dict[int, Song] = {}
        for start in range(0, len(unique), batch_size):
            chunk = unique[start : start + batch_size]
            for song_id, tokens, finished in zip(chunk, *self._generate_tokens(chunk, on_token), strict=True):
                done[song_id] = self._to_song(song_id, tokens, finished)
        return [done[i] for i in ids]

    def _generate_tokens(self, ids: list[int], on_token) -> tuple[list[list[int]], list[bool]]:
        started = time.perf_counter()
        eot = self.loaded.eot_id
        n = len(ids)
        outputs: list[list[int]] = [[] for _ in range(n)]
        finished = [False] * n
        active = list(range(n))  # batch row -> index into ids
        cache = self.gpt.new_cache(n, self.max_length)
        tokens = torch.full((n,), eot, dtype=torch.long)
        for step in range(self.max_length - 1):
            logits = self.gpt.step(tokens, cache)
            u = torch.from_numpy(uniforms([ids[i] for i in active], step))
            chosen = sample(logits, u, self.settings).tolist()
            self.stats.steps += 1
            self.stats.row_steps += len(active)
            self.stats.batch_rows += n
            keep = []
            for row, token in enumerate(chosen):
                index = active[row]
                if token == eot:
                    finished[index] = True
                else:
                    outputs[index].append(token)
                    keep.append(row)
                    if on_token:
                        on_token(ids[index], token)
            if not keep:
                break
            if len(keep) < len(active):
                cache.keep(torch.tensor(keep))
                active = [active[r] for r in keep]
            tokens = torch.tensor([chosen[r] for r in keep], dtype=torch.long)
        self.stats.batches += 1
        self.stats.tokens += sum(len(o) for o in outputs)
        self.stats.seconds += time.perf_counter() - started
        return outputs, finished

    def decode(self, tokens: list[int]) -> str:
        return self.loaded.tokenizer.decode(tokens, skip_special_tokens=False)

    def _to_song(self, song_id: int, tokens: list[int], finished: bool) -> Song:
        if not finished:
            return Song(song_id, "", "", self.model_name, len(tokens), TOO_LONG)
        title, lyrics = split_document(self.decode(tokens))
        title = title or derive_title(lyrics)
        if not lyrics or not title:
            return Song(song_id, "", "", self.model_name, len(tokens), EMPTY)
        return Song(song_id, title, lyrics, self.model_name, len(tokens))
