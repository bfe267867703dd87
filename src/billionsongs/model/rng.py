"""Counter-based random numbers: a uniform draw is a pure function of (song ID, step, stream).

No generator state exists anywhere, so a song's draws cannot depend on which other songs share its
batch, on the process, on thread count, or on what ran before. The mixer is SplitMix64's finaliser
(Steele et al., 2014) applied twice over the packed counter, which passes BigCrush as a hash.
"""

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_STEP_MUL = np.uint64(0xD1B54A32D192ED03)
_STREAM_MUL = np.uint64(0xABC98388FB8FAC03)


def _mix64(x: np.ndarray) -> np.ndarray:
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def uniforms(song_ids: "np.ndarray | list[int]", step: "int | np.ndarray | list[int]", stream: int = 0) -> np.ndarray:
    """One float64 in [0, 1) per song ID at its step (one step for all, or one per ID); `stream`
    separates independent uses."""
    ids = np.asarray(song_ids, dtype=np.uint64)
    steps = np.asarray(step, dtype=np.uint64)
    with np.errstate(over="ignore"):
        x = _mix64(ids * _GOLDEN + steps * _STEP_MUL + np.uint64(stream) * _STREAM_MUL)
        x = _mix64(x + _GOLDEN)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 2**53)
