"""Fit a line's syllables to a bar grid so that stressed syllables fall on strong beats.

Time is counted in sixteenth notes ("steps"), 16 to a 4/4 bar. A phrase is 2 bars, or 4 or more when
the line is long, and the final syllable starts in the first half of the last bar, so it is held over
the phrase's last chord (where the cadence is). Onsets are chosen by dynamic programming: each
syllable pays for sitting on a beat of the wrong weight for its stress, each gap pays for being an
awkward length (eighths and quarters are cheap), and a small per-song random term makes different
songs scan differently.
"""

import numpy as np

from billionsongs.music.chance import RHYTHM, draws

BAR = 16
# Beat weight of each sixteenth in a bar: 4 downbeat, 3 beat three, 2 beats two/four, 1 eighths, 0 sixteenths.
WEIGHT = [4 if p == 0 else 3 if p == 8 else 2 if p % 4 == 0 else 1 if p % 2 == 0 else 0 for p in range(BAR)]
# Cost of a syllable of each stress level (0 none, 1 primary, 2 secondary) on a step of each weight 0..4.
STRESS_COST = {1: (3.5, 2.5, 1.2, 0.3, 0.0), 2: (2.5, 1.5, 0.6, 0.2, 0.0), 0: (0.8, 0.0, 0.2, 0.6, 1.0)}
GAP_COST = {1: 1.5, 2: 0.0, 3: 1.0, 4: 0.2, 5: 2.0, 6: 0.8, 7: 2.5, 8: 1.0}
MAX_GAP = max(GAP_COST)


def phrase_bars(n_syllables: int) -> int:
    """2 bars for a line of up to 13 syllables (mostly eighth notes), then 4, 6, … as needed."""
    bars = 2
    while (n_syllables - 1) * 2 > bars * BAR - BAR // 2:
        bars += 2
    return bars


def place(stresses: list[int], song_id: int, step: int) -> tuple[int, list[int]]:
    """(bars, onset step of each syllable) for one line; a pure function of its stresses and (song_id, step)."""
    n = len(stresses)
    bars = phrase_bars(n)
    last = bars * BAR - BAR // 2  # the final syllable starts at or before the last half bar
    while (n - 1) > last:  # absurdly long lines: allow sixteenth-note chains
        bars += 2
        last = bars * BAR - BAR // 2
    slots = last + 1
    noise = 0.6 * draws(song_id, RHYTHM, step * 4096, n * slots).reshape(n, slots)
    weight = np.array([WEIGHT[s % BAR] for s in range(slots)])
    emit = np.array([STRESS_COST[s][w] for s in stresses for w in weight]).reshape(n, slots) + noise
    emit[0] += 0.4 * np.arange(slots)  # start near the top of the phrase
    emit[-1] += np.where(weight >= 3, 0.0, 2.0) + 0.15 * (last - np.arange(slots))  # land late, on a beat
    emit[-1, : (bars - 1) * BAR] = np.inf  # the phrase ends in its last bar, over its last chord
    cost = emit[0].copy()
    back = np.zeros((n, slots), dtype=int)
    for i in range(1, n):
        new = np.full(slots, np.inf)
        for s in range(i, slots):
            for gap in range(1, min(MAX_GAP, s) + 1):
                c = cost[s - gap] + GAP_COST[gap]
                if c < new[s]:
                    new[s], back[i, s] = c, s - gap
        cost = new + emit[i]
    onsets = [int(np.argmin(cost))]
    for i in range(n - 1, 0, -1):
        onsets.append(int(back[i, onsets[-1]]))
    return bars, onsets[::-1]
