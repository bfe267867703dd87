"""Write the music for a song: key, tempo, a chord loop per section kind, and one phrase per lyric line.

Every choice is drawn from the song ID (see chance.py). Each distinct line (by `Line.key`) gets one
phrase — rhythm, pitches and the chords under it — and every repeat of the line replays that phrase,
so choruses repeat musically. Pitches are chosen by a Viterbi search over scale degrees: steps are
cheap and leaps dear (mostly stepwise motion), stressed or on-the-beat syllables want chord tones,
the line follows a gentle arch around the section's register, and the last note must be a chord tone
(the tonic when the line ends a section, over a V-I cadence).
"""

import math
from dataclasses import dataclass, field

import numpy as np

from billionsongs.music.chance import KEY, PITCH, PROGRESSION, STYLE, TEMPO, draw, draws, pick
from billionsongs.music.form import Line, parse_form
from billionsongs.music.rhythm import BAR, WEIGHT, place
from billionsongs.music.theory import DOMINANT, PROGRESSIONS, Key, chord_tones

LOW, HIGH = -3, 9  # melody range in scale degrees around the tonic: about a twelfth
CENTRE = {"verse": 2.0, "chorus": 4.0}  # choruses sit higher
LEAP_COST = {0: 0.7, 1: 0.0, 2: 0.6, 3: 1.6, 4: 2.4}  # by interval in scale steps; wider is not allowed
INTRO_BARS, GAP_BARS, OUTRO_BARS = 2, 1, 2


@dataclass(frozen=True)
class Phrase:
    """The music for one distinct lyric line: onsets (steps from the phrase start), degrees, one chord per bar."""

    bars: int
    onsets: tuple[int, ...]
    degrees: tuple[int, ...]
    chords: tuple[int, ...]


@dataclass(frozen=True)
class Note:
    """A sung syllable: start/length in sixteenth steps from the start of the song."""

    start: int
    length: int
    pitch: int
    text: str
    line_index: int
    word_index: int
    word_start: bool  # first syllable of its word
    line_start: bool  # first syllable of its line
    section_start: bool  # first syllable of its section
    stress: int


@dataclass
class Arrangement:
    song_id: int
    title: str
    key: Key
    bpm: int
    melody_program: int
    chord_program: int
    chord_style: str
    drum_style: str
    notes: list[Note] = field(default_factory=list)
    chords: list[tuple[int, int, int]] = field(default_factory=list)  # (start step, length, root degree)
    section_starts: list[int] = field(default_factory=list)  # bar numbers
    phrase_ends: list[tuple[int, bool]] = field(default_factory=list)  # (index into notes, ends a section)
    bars: int = 0


def choose_key(song_id: int) -> Key:
    """Tonic between G3 and F#4 so the melody range stays singable; a quarter of songs in minor."""
    return Key(tonic=55 + int(draw(song_id, KEY, 0) * 12), minor=draw(song_id, KEY, 1) < 0.25)


def pitch_line(stresses: list[int], onsets: list[int], chords: tuple[int, ...], kind: str, cadence: bool,
               key: Key, song_id: int, step: int) -> list[int]:
    """Scale degrees for one phrase by Viterbi search (costs described in the module docstring)."""
    n, states = len(stresses), np.arange(LOW, HIGH + 1)
    noise = draws(song_id, PITCH, step * 4096, n * len(states)).reshape(n, len(states))
    leap = np.full((len(states), len(states)), np.inf)
    for a, b in np.ndindex(leap.shape):
        leap[a, b] = LEAP_COST.get(abs(int(a) - int(b)), np.inf)
    emit = np.zeros((n, len(states)))
    for i in range(n):
        root = chords[onsets[i] // BAR]
        tones = chord_tones(root)
        is_tone = np.array([d % 7 in tones for d in states])
        strong = stresses[i] == 1 or WEIGHT[onsets[i] % BAR] >= 3
        arch = 1.5 * math.sin(math.pi * i / max(1, n - 1))
        emit[i] = np.where(is_tone, 0.0, 2.5 if strong else 0.4) + 0.25 * abs(states - CENTRE[kind] - arch)
        emit[i] += 1.2 * noise[i]
        if key.minor and root == DOMINANT:
            emit[i] += np.where(states % 7 == 5, 2.0, 0.0)  # avoid the augmented second below the leading tone
        if i == n - 1:  # phrase ending: a stable note
            stable = (states % 7 == 0) if cadence else is_tone
            emit[i] += np.where(stable, np.where(states % 7 == root % 7, 0.0, 0.3), np.inf)
    cost, back = emit[0].copy(), np.zeros((n, len(states)), dtype=int)
    for i in range(1, n):
        total = cost[:, None] + leap
        back[i] = np.argmin(total, axis=0)
        cost = total[back[i], np.arange(len(states))] + emit[i]
    path = [int(np.argmin(cost))]
    for i in range(n - 1, 0, -1):
        path.append(int(back[i, path[-1]]))
    return [int(states[s]) for s in path[::-1]]


def write_phrase(line: Line, kind: str, position: int, cadence: bool, key: Key, loops: dict, song_id: int,
                 step: int) -> Phrase:
    syllables = line.syllables
    stresses = [s.stress for s in syllables]
    bars, onsets = place(stresses, song_id, step)
    loop = loops[kind]
    chords = [loop[(position * bars + b) % len(loop)] for b in range(bars)]
    if cadence:
        chords[-2:] = [DOMINANT, 0]
    degrees = pitch_line(stresses, onsets, tuple(chords), kind, cadence, key, song_id, step)
    return Phrase(bars, tuple(onsets), tuple(degrees), tuple(chords))


def arrange(song_id: int, title: str, lyrics: str) -> Arrangement:
    """The whole song's music, a pure function of (song_id, title, lyrics)."""
    key = choose_key(song_id)
    arr = Arrangement(
        song_id, title.strip() or f"Song {song_id}", key,
        bpm=84 + int(draw(song_id, TEMPO, 0) * 41),
        melody_program=pick(song_id, STYLE, 0, (73, 71, 80, 65, 56)),
        chord_program=pick(song_id, STYLE, 1, (0, 4, 48, 24)),
        chord_style=pick(song_id, STYLE, 2, ("whole", "halves", "pulse")),
        drum_style=pick(song_id, STYLE, 3, ("straight", "push", "half")),
    )
    loops = {kind: pick(song_id, PROGRESSION, i, PROGRESSIONS[(key.minor, kind)])
             for i, kind in enumerate(("verse", "chorus"))}
    sections = parse_form(lyrics)
    ends_section = {s.lines[-1].key for s in sections}
    phrases: dict[str, Phrase] = {}
    bar = INTRO_BARS
    arr.chords.append((0, INTRO_BARS * BAR, 0))
    for s_index, section in enumerate(sections):
        arr.section_starts.append(bar)
        for position, line in enumerate(section.lines):
            if line.key not in phrases:  # the first occurrence writes the phrase; repeats replay it
                phrases[line.key] = write_phrase(line, section.kind, position, line.key in ends_section, key,
                                                 loops, song_id, step=len(phrases))
            _place_line(arr, phrases[line.key], line, bar, section_start=position == 0)
            arr.phrase_ends.append((len(arr.notes) - 1, position == len(section.lines) - 1))
            bar += phrases[line.key].bars
        gap = GAP_BARS if s_index < len(sections) - 1 else OUTRO_BARS
        arr.chords.append((bar * BAR, gap * BAR, 0))
        bar += gap
    arr.bars = bar if sections else INTRO_BARS
    return arr


def _place_line(arr: Arrangement, phrase: Phrase, line: Line, bar: int, section_start: bool) -> None:
    start = bar * BAR
    arr.chords.extend((start + b * BAR, BAR, root) for b, root in enumerate(phrase.chords))
    ends = list(phrase.onsets[1:]) + [phrase.bars * BAR - 2]  # hold the last syllable, breathe an eighth
    i = 0
    for w, word in enumerate(line.words):
        for k, syllable in enumerate(word):
            onset, degree = phrase.onsets[i], phrase.degrees[i]
            chord = phrase.chords[onset // BAR]
            arr.notes.append(Note(start + onset, ends[i] - onset, arr.key.pitch(degree, chord), syllable.text,
                                  line.index, w, k == 0, i == 0, section_start and i == 0, syllable.stress))
            i += 1
