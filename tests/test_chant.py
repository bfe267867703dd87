"""The chant guard: no song repeats one or two words for more than N words in a row."""

import re

import pytest
import torch

from billionsongs.model.chant import ChantGuard, words
from billionsongs.model.generate import Generator
from billionsongs.model.loading import load_model
from billionsongs.model.sampling import SamplingSettings


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return load_model(str(tiny_model_dir)).tokenizer


def test_long_chant_bans_its_words_and_nothing_else(tokenizer):
    guard = ChantGuard(tokenizer, max_words=8)
    chant = tokenizer.encode("take me home\noh oh oh oh\noh oh oh oh").ids
    banned = guard.banned(chant)
    assert banned and {w for i in banned for w in words(tokenizer.decode([i]))} == {"oh"}
    assert guard.banned(tokenizer.encode("oh oh oh oh oh oh oh").ids) == []  # 7 words: still fine
    assert guard.banned(tokenizer.encode("every light in the city burning bright tonight").ids) == []
    assert ChantGuard(tokenizer, max_words=0).banned(chant) == []


def test_two_word_chants_count_too(tokenizer):
    banned = ChantGuard(tokenizer, max_words=8).banned(tokenizer.encode("oh home oh home oh home oh home").ids)
    assert {w for i in banned for w in words(tokenizer.decode([i]))} == {"oh", "home"}


def _chanting_generator(model_dir, max_chant_words: int) -> Generator:
    """A model that always wants to sing ' oh' next, ending after 60 tokens."""
    gen = Generator(str(model_dir), settings=SamplingSettings(max_chant_words=max_chant_words), max_tokens=80)
    oh = gen.loaded.tokenizer.encode(" oh").ids
    assert len(oh) == 1
    real_step = gen.gpt.step

    @torch.inference_mode()
    def step(tokens, positions, cache):
        logits = real_step(tokens, positions, cache)
        logits[:, oh[0]] += 50.0
        logits[positions >= 60, gen.loaded.eot_id] += 100.0
        return logits

    gen.gpt.step = step
    return gen


def _longest_chant(lyrics: str) -> int:
    longest = current = 0
    for word in words(lyrics):
        current = current + 1 if word == "oh" else 0
        longest = max(longest, current)
    return longest


def test_generation_moves_on_after_eight_ohs(tiny_model_dir):
    guarded = _chanting_generator(tiny_model_dir, 8).generate(range(6), batch_size=3)
    unguarded = _chanting_generator(tiny_model_dir, 0).generate(range(6), batch_size=3)
    assert all(_longest_chant(s.lyrics) <= 8 for s in guarded)
    assert all(_longest_chant(s.lyrics) > 30 for s in unguarded)
    assert all(re.search(r"\boh\b", s.lyrics) for s in guarded)  # short chants remain


def test_guarded_songs_ignore_their_batch(tiny_model_dir):
    gen = _chanting_generator(tiny_model_dir, 8)
    alone = [gen.generate([i], batch_size=1)[0].as_dict() for i in range(4)]
    assert [s.as_dict() for s in gen.generate([9, 0, 1, 8, 2, 3], batch_size=4)][1:3] + \
        [s.as_dict() for s in gen.generate([2, 3], batch_size=2)] == alone
