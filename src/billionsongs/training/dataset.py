"""Packing songs into training windows, as the original did: title line + lyrics + end-of-text, all
songs concatenated into one token stream, fixed-length windows drawn from it.

Validation songs are chosen per song (a hash of the text), never per window, so no validation song
leaks into training through a window that straddles two songs. Token streams are cached on disk keyed
by a hash of the texts and the tokenizer, so a second run skips tokenisation.
"""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from billionsongs.lyrics.document import format_document
from billionsongs.training.readers import SongText

CACHE_VERSION = "1"


@dataclass
class TokenStreams:
    train: np.ndarray
    val: np.ndarray
    train_songs: int
    val_songs: int
    cache_file: Path
    from_cache: bool


def is_validation(song: SongText, fraction: float) -> bool:
    digest = hashlib.sha256(song.lyrics.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def document(song: SongText) -> str:
    return format_document(song.title, song.lyrics) if song.title else song.lyrics


def build_streams(songs: list[SongText], tokenizer: Tokenizer, eot_id: int, cache_dir: Path,
                  val_fraction: float = 0.05, max_tokens: int | None = None) -> TokenStreams:
    """Tokenise (or load from cache) and split; songs longer than `max_tokens` are left out."""
    key = hashlib.sha256()
    for part in (CACHE_VERSION, tokenizer.to_str(), str(val_fraction), str(max_tokens)):
        key.update(part.encode("utf-8"))
    for song in songs:
        key.update(document(song).encode("utf-8") + b"\0")
    cache_file = cache_dir / f"tokens-{key.hexdigest()[:24]}.npz"
    if cache_file.exists():
        with np.load(cache_file) as data:
            return TokenStreams(data["train"], data["val"], int(data["counts"][0]), int(data["counts"][1]),
                                cache_file, True)
    parts: dict[bool, list[np.ndarray]] = {False: [], True: []}
    encoded = tokenizer.encode_batch([document(song) for song in songs])
    for song, enc in zip(songs, encoded, strict=True):
        ids = enc.ids + [eot_id]
        if max_tokens and len(ids) > max_tokens:
            continue
        parts[is_validation(song, val_fraction)].append(np.asarray(ids, dtype=np.int32))
    train = np.concatenate([np.asarray([eot_id], np.int32), *parts[False]])
    val = np.concatenate([np.asarray([eot_id], np.int32), *parts[True]]) if parts[True] else train[:0]
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_file.with_suffix(".tmp.npz")
    np.savez(tmp, train=train, val=val, counts=np.asarray([len(parts[False]), len(parts[True])]))
    tmp.replace(cache_file)
    return TokenStreams(train, val, len(parts[False]), len(parts[True]), cache_file, False)


def window_batch(stream: np.ndarray, step: int, batch_size: int, block: int,
                 seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows for one step, a pure function of (seed, step): resuming at step N sees the same data."""
    rng = np.random.default_rng([seed, step])
    starts = rng.integers(0, len(stream) - block - 1, size=batch_size)
    chunk = np.stack([stream[s : s + block + 1] for s in starts]).astype(np.int64)
    data = torch.from_numpy(chunk)
    return data[:, :-1], data[:, 1:]


def eval_batches(stream: np.ndarray, block: int, batch_size: int, max_batches: int):
    """Consecutive non-overlapping windows over the validation stream, for a stable loss estimate."""
    n = min((len(stream) - 1) // block, max_batches * batch_size)
    for first in range(0, n, batch_size):
        idx = range(first, min(first + batch_size, n))
        chunk = np.stack([stream[i * block : i * block + block + 1] for i in idx]).astype(np.int64)
        data = torch.from_numpy(chunk)
        yield data[:, :-1], data[:, 1:]
