"""Deterministic draws for the music, built on the engine's counter-based RNG.

Every musical choice is a pure function of (song ID, what is being chosen), like the lyrics, so a
song's melody never depends on the process or on other songs. Streams 100+ are reserved for music
(stream 0 is the lyrics sampler).
"""

import numpy as np

from billionsongs.model.rng import uniforms

KEY, TEMPO, PROGRESSION, STYLE, RHYTHM, PITCH = 100, 101, 102, 103, 104, 105


def draws(song_id: int, stream: int, start: int, n: int) -> np.ndarray:
    """n uniforms in [0, 1): the draws at steps start … start+n-1 of `stream` for this song."""
    return uniforms([song_id], np.arange(start, start + n, dtype=np.uint64), stream)


def draw(song_id: int, stream: int, step: int = 0) -> float:
    return float(uniforms([song_id], step, stream)[0])


def pick(song_id: int, stream: int, step: int, options: list | tuple):
    """One of `options`, uniformly."""
    return options[min(len(options) - 1, int(draw(song_id, stream, step) * len(options)))]
