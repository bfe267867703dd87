"""Evaluation: validation perplexity and lyric statistics of generated songs next to the dataset's.

The statistics catch what perplexity does not: songs that never end, degenerate loops (one line
repeated for more than half the song, like the original's "eu vou, eu vou" sample), prose instead
of short lines, and recitation of training lyrics (any 12-word run copied verbatim).
"""

import math
import re
from collections import Counter

import torch
from transformers import GPT2LMHeadModel

from billionsongs.model.generate import TOO_LONG, Generator
from billionsongs.model.loading import load_model
from billionsongs.training.dataset import build_streams, eval_batches, is_validation
from billionsongs.training.readers import SongText

COPY_RUN_WORDS = 12
_WORD = re.compile(r"[a-z0-9']+")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("’", "'"))


def lyric_stats(lyrics: list[str]) -> dict:
    """Lines per song, words per line, degenerate share and distinct-2 over a list of song texts."""
    lines_per_song, words_per_line, degenerate, bigrams, distinct = [], [], 0, 0, set()
    for text in lyrics:
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        lines_per_song.append(len(lines))
        words_per_line += [len(ln.split()) for ln in lines]
        if lines and Counter(ln.lower() for ln in lines).most_common(1)[0][1] > len(lines) / 2:
            degenerate += 1
        words = _words(text)
        pairs = list(zip(words, words[1:], strict=False))
        bigrams += len(pairs)
        distinct.update(pairs)
    n = max(1, len(lyrics))
    return {
        "songs": len(lyrics),
        "lines_per_song": round(sum(lines_per_song) / n, 2),
        "words_per_line": round(sum(words_per_line) / max(1, len(words_per_line)), 2),
        "degenerate_share": round(degenerate / n, 4),
        "distinct_2": round(len(distinct) / max(1, bigrams), 4),
    }


def copied_runs(lyrics: list[str], training_texts: list[str], run: int = COPY_RUN_WORDS,
                min_distinct: int = 1) -> float:
    """Share of songs containing any `run`-word sequence found verbatim in the training text.

    `min_distinct=3` ignores runs of one or two repeated words ("oh oh oh …", "yeah yeah …"): vocables
    that every songwriter uses and nobody owns, which otherwise dominate this count.
    """
    seen = set()
    for text in training_texts:
        words = _words(text)
        seen.update(hash(tuple(words[i : i + run])) for i in range(len(words) - run + 1))
    copies = 0
    for text in lyrics:
        words = _words(text)
        runs = (tuple(words[i : i + run]) for i in range(len(words) - run + 1))
        if any(len(set(r)) >= min_distinct and hash(r) in seen for r in runs):
            copies += 1
    return round(copies / max(1, len(lyrics)), 4)


@torch.no_grad()
def validation_perplexity(model_dir: str, songs: list[SongText], cache_dir, val_fraction: float) -> float | None:
    loaded = load_model(model_dir)
    model = GPT2LMHeadModel.from_pretrained(loaded.path).eval()
    block = loaded.config.n_positions
    val_songs = [s for s in songs if is_validation(s, val_fraction)] or songs
    streams = build_streams(val_songs, loaded.tokenizer, loaded.eot_id, cache_dir, val_fraction=0.0, max_tokens=block)
    losses = []
    for x, y in eval_batches(streams.train, block, 8, 50):
        logits = model(x).logits
        losses.append(torch.nn.functional.cross_entropy(logits.view(-1, logits.shape[-1]), y.reshape(-1)).item())
    return round(math.exp(sum(losses) / len(losses)), 3) if losses else None


def evaluate(model_dir: str, songs: list[SongText], cache_dir, count: int = 200, val_fraction: float = 0.05,
             batch_size: int = 32) -> dict:
    generator = Generator(model_dir)
    generated = generator.generate(range(count), batch_size=batch_size)
    finished = [s for s in generated if s.error is None]
    ours = lyric_stats([s.lyrics for s in finished])
    ours["ended_on_own_share"] = round(sum(s.error != TOO_LONG for s in generated) / max(1, count), 4)
    texts, training = [s.lyrics for s in finished], [s.lyrics for s in songs]
    ours["copied_12_word_run_share"] = copied_runs(texts, training)
    ours["copied_12_word_run_share_ignoring_vocables"] = copied_runs(texts, training, min_distinct=3)
    return {
        "model": generator.model_name,
        "validation_perplexity": validation_perplexity(model_dir, songs, cache_dir, val_fraction),
        "generated": ours,
        "dataset": lyric_stats([s.lyrics for s in songs]),
    }
