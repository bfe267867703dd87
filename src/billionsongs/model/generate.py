"""Batched, deterministic song generation with continuous batching.

Up to `batch_size` songs advance together, one forward pass per step, each from its own
end-of-text start token at its own position. Song `id`'s token at its step t is drawn with
`uniforms(id, t)`, and the forward pass is row-invariant (see `gpt.py`), so a song is the same alone or
in any batch, whenever it joined.

Rows that finish early: the moment a song emits end-of-text, the next waiting ID takes its row (its
cache row is simply overwritten from position 0), so a finished song never holds a slot. Only when no
IDs are waiting does the batch shrink (surviving rows are moved down, one cache copy) and run the
last songs out at lower occupancy; `GenerationStats.row_utilisation` measures that tail.

`Generator.run` takes its IDs from a callable rather than a list, so a service keeps one batch running:
a song requested while the batch runs takes the next free row, and each song is handed back the step
it ends.
"""

import itertools
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch

from billionsongs.lyrics.document import derive_title, split_document
from billionsongs.model import topk
from billionsongs.model.chant import ChantGuard
from billionsongs.model.device import resolve_device
from billionsongs.model.gpt import GPT2
from billionsongs.model.loading import LoadedModel, load_model
from billionsongs.model.precision import Precision, resolve_precision
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
    """Counts summed over a generator's `run`s (and so `generate` calls), for benchmarks and logs."""

    steps: int = 0
    row_steps: int = 0
    batch_rows: int = 0
    seconds: float = 0.0
    batches: int = 0
    tokens: int = field(default=0)

    @property
    def row_utilisation(self) -> float:
        """Share of row-slots that did useful work: 1.0 means no row waited on a longer song, or sat empty
        for want of songs to write."""
        return self.row_steps / max(1, self.batch_rows)


class Generator:
    """Holds one loaded model and writes songs for IDs."""

    def __init__(self, model: LoadedModel | str | None = None, *, dtype: Precision | torch.dtype | str | None = None,
                 settings: SamplingSettings | None = None, max_tokens: int | None = None,
                 device: torch.device | str | None = None):
        """`dtype`: a torch dtype, a Precision or its name ("int8", ...); default $BILLIONSONGS_DTYPE or auto.
        `device`: "cpu", "cuda" or "auto"; default $BILLIONSONGS_DEVICE or auto (`device.py`)."""
        self.loaded = model if isinstance(model, LoadedModel) else load_model(model)
        self.device = resolve_device(device)
        self.precision = resolve_precision(dtype, self.device)
        self.gpt = GPT2(self.loaded.config, self.loaded.state_dict, dtype=self.precision.dtype,
                        int8=self.precision.int8, device=self.device)
        self.settings = settings or SamplingSettings()
        if self.device.type == "cpu":
            topk.available()  # built and checked now (seconds, once per process), not in the first song's step
        self.chant_guard = ChantGuard(self.loaded.tokenizer, self.settings.max_chant_words)
        limit = self.loaded.config.n_positions
        self.max_length = min(limit, max_tokens + 1) if max_tokens else limit
        self.stats = GenerationStats()

    @property
    def model_name(self) -> str:
        return self.loaded.name

    def generate(self, song_ids: Iterable[int], batch_size: int = 16,
                 on_token: Callable[[int, int], None] | None = None) -> list[Song]:
        """Songs for `song_ids`, in the order given; duplicates are generated once.

        `on_token(song_id, token)` is called for every token as it is written (for live streaming).
        """
        ids = list(song_ids)
        unique = list(dict.fromkeys(ids))
        waiting = iter(unique)
        songs: dict[int, Song] = {}
        self.run(lambda free: list(itertools.islice(waiting, free)), min(max(1, batch_size), max(1, len(unique))),
                 on_token, lambda song: songs.__setitem__(song.id, song))
        return [songs[i] for i in ids]

    def run(self, take: Callable[[int], list[int]], batch_size: int = 16,
            on_token: Callable[[int, int], None] | None = None,
            on_song: Callable[[Song], None] | None = None) -> int:
        """Write songs for the IDs `take(free_rows)` hands out, until it hands out none while no row is busy;
        returns how many songs were written.

        For a service that keeps one batch running: `take` is asked after every step that leaves a row
        free, so an ID that arrives mid-batch starts at the next step, and `on_song` gets each song the
        step it ends, not when the batch does. `take` must not hand out an ID that is still being written.
        """
        started = time.perf_counter()
        eot, limit = self.loaded.eot_id, self.max_length - 1
        row_ids = take(batch_size)[:batch_size]
        if not row_ids:
            return 0
        cache = self.gpt.new_cache(batch_size, self.max_length)
        # Per row: song ID, tokens written so far (its position is their count).
        written: list[list[int]] = [[] for _ in row_ids]
        tokens = [eot] * len(row_ids)
        done = 0
        try:
            while row_ids:
                n = len(row_ids)
                positions = torch.tensor([len(w) for w in written])
                logits = self.gpt.step(torch.tensor(tokens, dtype=torch.long, device=self.device), positions, cache)
                self._mask_chants(logits, written)
                u = torch.from_numpy(uniforms(row_ids, positions.numpy())).to(self.device)
                chosen = sample(logits, u, self.settings).tolist()
                self.stats.steps += 1
                self.stats.row_steps += n
                self.stats.batch_rows += batch_size
                ended = []
                for row, token in enumerate(chosen):
                    song_id = row_ids[row]
                    if token != eot:
                        written[row].append(token)
                        if on_token:
                            on_token(song_id, token)
                    if token == eot or len(written[row]) >= limit:
                        ended.append(row)
                        done += 1
                        self.stats.tokens += len(written[row])
                        if on_song:
                            on_song(self._to_song(song_id, written[row], token == eot))
                tokens = chosen
                if ended or n < batch_size:
                    row_ids, written, tokens = self._refill(take, cache, batch_size, ended, row_ids, written, tokens)
        finally:
            self.gpt.release(cache)
            self.stats.batches += 1
            self.stats.seconds += time.perf_counter() - started
        return done

    def _refill(self, take, cache, batch_size: int, ended: list[int], row_ids: list[int], written: list[list[int]],
                tokens: list[int]) -> tuple[list[int], list[list[int]], list[int]]:
        """Give ended rows (then free rows past the end) to new IDs; close the gaps left when too few came;
        shorten the cache once the longest song in it has ended.

        A new song takes its row as is: its cache row is simply overwritten from position 0."""
        new = take(batch_size - len(row_ids) + len(ended))[:batch_size - len(row_ids) + len(ended)]
        for row, song_id in zip(ended, new, strict=False):
            row_ids[row], written[row], tokens[row] = song_id, [], self.loaded.eot_id
        new, ended = new[len(ended):], ended[len(new):]
        if ended:
            gone = set(ended)
            survivors = [r for r in range(len(row_ids)) if r not in gone]
            if survivors:
                longest = max(len(written[r]) for r in survivors) + 1
                cache.move(torch.tensor(survivors, device=self.device),
                           torch.arange(len(survivors), device=self.device), longest)
            row_ids = [row_ids[r] for r in survivors]
            written = [written[r] for r in survivors]
            tokens = [tokens[r] for r in survivors]
        written += [[] for _ in new]
        if written:
            cache.shrink(max(len(w) for w in written) + 1)
        return row_ids + new, written, tokens + [self.loaded.eot_id] * len(new)

    @torch.inference_mode()
    def _mask_chants(self, logits: torch.Tensor, written: list[list[int]]) -> None:
        for row, tokens in enumerate(written):
            banned = self.chant_guard.banned(tokens)
            if banned:
                logits[row, banned] = -math.inf

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
