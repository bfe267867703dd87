"""Keys, scale degrees and diatonic chords: the small amount of music theory the melody needs.

Melodies are written in scale degrees (0 = tonic, 7 = the octave above) and only turned into MIDI
pitches at the end, so staying in key is structural, not a filter. The one exception is the minor
key's dominant: V is played major (harmonic minor), so while V sounds, degree 6 is raised a semitone.
"""

from dataclasses import dataclass

MAJOR = (0, 2, 4, 5, 7, 9, 11)
MINOR = (0, 2, 3, 5, 7, 8, 10)
NOTE_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MAJOR_KEYS = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
_MINOR_KEYS = ("Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm")
DOMINANT = 4  # chord root (a scale degree) of V


@dataclass(frozen=True)
class Key:
    tonic: int  # MIDI pitch of melody degree 0
    minor: bool

    @property
    def scale(self) -> tuple[int, ...]:
        return MINOR if self.minor else MAJOR

    @property
    def name(self) -> str:
        """The key as MIDI key-signature meta events (and mido) spell it: "Eb", "F#m"."""
        return (_MINOR_KEYS if self.minor else _MAJOR_KEYS)[self.tonic % 12]

    @property
    def pitch_classes(self) -> frozenset[int]:
        return frozenset((self.tonic + step) % 12 for step in self.scale)

    def raises(self, degree: int, chord: int) -> bool:
        """True where the chord calls for the leading tone: degree 6 under V in a minor key."""
        return self.minor and chord % 7 == DOMINANT and degree % 7 == 6

    def pitch(self, degree: int, chord: int | None = None) -> int:
        octave, step = divmod(degree, 7)
        raised = chord is not None and self.raises(degree, chord)
        return self.tonic + 12 * octave + self.scale[step] + raised


def chord_tones(root: int) -> frozenset[int]:
    """Scale degrees (mod 7) of the triad built on `root`."""
    return frozenset((root + k) % 7 for k in (0, 2, 4))


def chord_pitches(key: Key, root: int, low: int) -> list[int]:
    """A close root-position triad whose root is the first pitch at or above MIDI pitch `low`."""
    base = key.pitch(root % 7, root)
    base += 12 * ((low - base + 11) // 12)
    return [base + key.pitch(root % 7 + k, root) - key.pitch(root % 7, root) for k in (0, 2, 4)]


def note_name(pitch: int) -> str:
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


# Four-chord loops (roots as scale degrees), the staple of simple songs.
PROGRESSIONS = {
    (False, "verse"): [(0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 0, 4), (5, 3, 0, 4), (0, 3, 4, 3)],
    (False, "chorus"): [(3, 4, 0, 5), (0, 4, 5, 3), (3, 0, 4, 0), (0, 3, 4, 4), (5, 3, 4, 0)],
    (True, "verse"): [(0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 4), (0, 3, 6, 2)],
    (True, "chorus"): [(5, 2, 6, 0), (5, 6, 0, 0), (3, 4, 0, 5), (0, 6, 5, 4)],
}
