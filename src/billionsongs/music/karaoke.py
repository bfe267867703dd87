"""The karaoke MIDI file (.kar conventions) and the syllable timings a browser player highlights by.

Layout (type 1, 480 ticks per quarter, 4/4, one tempo):
  track 0 "Billion Songs":  tempo, time and key signature, "@KMIDI KARAOKE FILE" / "@V0100" headers
  track 1 "Words":          .kar text events: "@LENGL", "@T<title>", "@TBillion Songs #<id>", then one
                            text event per syllable at its note-on; "\\" starts a paragraph (section),
                            "/" a line, " " a word — the convention karaoke players (and VanBasco-style
                            readers) expect
  track 2 "Melody":         channel 1, the sung notes, plus a standard lyrics meta event per syllable
  track 3 "Chords":         channel 2 triads and channel 3 bass roots
  track 4 "Drums":          channel 10 (index 9), General MIDI kit
Text is UTF-8. mido writes events in list order, so the same arrangement always gives the same bytes.
"""

import io

import mido

from billionsongs.music.melody import Arrangement, arrange
from billionsongs.music.rhythm import BAR
from billionsongs.music.theory import chord_pitches

TICKS_PER_BEAT = 480
STEP = TICKS_PER_BEAT // 4  # ticks per sixteenth
MELODY, CHORDS, BASS, DRUMS = 0, 1, 2, 9
KICK, SNARE, HAT, CRASH = 36, 38, 42, 49
DRUM_PATTERNS = {  # steps within a bar -> instrument
    "straight": {KICK: (0, 8), SNARE: (4, 12), HAT: (0, 2, 4, 6, 8, 10, 12, 14)},
    "push": {KICK: (0, 6, 8), SNARE: (4, 12), HAT: (0, 2, 4, 6, 8, 10, 12, 14)},
    "half": {KICK: (0,), SNARE: (8,), HAT: (0, 4, 8, 12)},
}
CHORD_RHYTHMS = {"whole": (0,), "halves": (0, 8), "pulse": (0, 4, 8, 12)}


def kar_text(note) -> str:
    prefix = "\\" if note.section_start else "/" if note.line_start else " " if note.word_start else ""
    return prefix + note.text


def _track(name: str, events: list[tuple[int, int, mido.Message | mido.MetaMessage]]) -> mido.MidiTrack:
    """Absolute (tick, order, message) events -> a track with delta times; note-offs sort before note-ons."""
    track = mido.MidiTrack([mido.MetaMessage("track_name", name=name)])
    now = 0
    for tick, _, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=tick - now))
        now = tick
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track


def _note(events: list, channel: int, start: int, length: int, pitch: int, velocity: int) -> None:
    events.append((start * STEP, 2, mido.Message("note_on", channel=channel, note=pitch, velocity=velocity)))
    events.append((start * STEP + max(1, length * STEP - 10), 0,
                   mido.Message("note_off", channel=channel, note=pitch, velocity=0)))


def build_midi(arr: Arrangement) -> mido.MidiFile:
    end = arr.bars * BAR * STEP
    conductor = [
        (0, 0, mido.MetaMessage("text", text="@KMIDI KARAOKE FILE")),
        (0, 0, mido.MetaMessage("text", text="@V0100")),
        (0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(arr.bpm))),
        (0, 0, mido.MetaMessage("time_signature", numerator=4, denominator=4)),
        (0, 0, mido.MetaMessage("key_signature", key=arr.key.name)),
        (end, 0, mido.MetaMessage("marker", text="end")),
    ]
    words = [(0, 0, mido.MetaMessage("text", text=t)) for t in
             ("@LENGL", f"@T{arr.title}", f"@TBillion Songs #{arr.song_id}")]
    melody = [(0, 0, mido.Message("program_change", channel=MELODY, program=arr.melody_program))]
    for n in arr.notes:
        words.append((n.start * STEP, 1, mido.MetaMessage("text", text=kar_text(n))))
        melody.append((n.start * STEP, 1, mido.MetaMessage("lyrics", text=n.text)))
        _note(melody, MELODY, n.start, n.length, n.pitch, 100 if n.stress == 1 else 84)
    chords = [(0, 0, mido.Message("program_change", channel=CHORDS, program=arr.chord_program)),
              (0, 0, mido.Message("program_change", channel=BASS, program=33))]
    hits = CHORD_RHYTHMS[arr.chord_style]
    for start, length, root in arr.chords:
        for bar in range(start, start + length, BAR):
            for k, hit in enumerate(hits):
                dur = (hits[k + 1] if k + 1 < len(hits) else BAR) - hit
                for pitch in chord_pitches(arr.key, root, arr.key.tonic - 9):
                    _note(chords, CHORDS, bar + hit, dur, pitch, 58)
            for hit in (0, 8):
                _note(chords, BASS, bar + hit, 8, chord_pitches(arr.key, root, arr.key.tonic - 24)[0], 80)
    drums = []
    section_bars = {b * BAR for b in arr.section_starts}
    for bar in range(0, arr.bars * BAR, BAR):
        pattern = DRUM_PATTERNS["half" if bar < 2 * BAR else arr.drum_style]
        for drum, steps in pattern.items():
            for s in steps:
                _note(drums, DRUMS, bar + s, 1, drum, {KICK: 100, SNARE: 90, HAT: 60}[drum])
        if bar in section_bars:
            _note(drums, DRUMS, bar, 4, CRASH, 90)
    midi = mido.MidiFile(type=1, ticks_per_beat=TICKS_PER_BEAT, charset="utf-8")
    midi.tracks.extend([_track("Billion Songs", conductor), _track("Words", words), _track("Melody", melody),
                        _track("Chords", chords), _track("Drums", drums)])
    return midi


def karaoke_bytes(song_id: int, title: str, lyrics: str) -> bytes:
    """The .kar-style MIDI file for a song; byte-identical for the same (song_id, title, lyrics)."""
    buffer = io.BytesIO()
    build_midi(arrange(song_id, title, lyrics)).save(file=buffer)
    return buffer.getvalue()


def syllable_timings(song_id: int, title: str, lyrics: str) -> list[tuple[float, int, int, str]]:
    """(time in seconds, line index in lyrics.splitlines(), word index in line.split(), syllable text) per
    sung syllable, in order: what a player highlights and when. Times match the MIDI file's note-ons."""
    arr = arrange(song_id, title, lyrics)
    seconds_per_step = 60.0 / arr.bpm / 4
    return [(round(n.start * seconds_per_step, 3), n.line_index, n.word_index, n.text) for n in arr.notes]
