"""The karaoke MIDI file, checked from its bytes as a karaoke player would read it."""

import html
import io
import re

import mido
import pytest

from billionsongs.lyrics.document import split_document
from billionsongs.music import arrange, karaoke_bytes, karaoke_lines, karaoke_markup, syllable_timings
from billionsongs.music.form import is_header

TITLE, FIXTURE = split_document("""Walking Home

I was walking home in the rain tonight
Every light in the city burning bright
Oh oh, take me home
Oh oh, take me home

You said forever, I said maybe so
We were dancing slow on the radio
Oh oh, take me home
""")  # the same song conftest trains the tiny model on
ODD = """[Verse 1]
“Don't” stop — café au lait, 1999 & beyond!
a really-long line with far too many words in it to fit two bars so it has to spread out over more of them

[Chorus]
Oh oh, take me home
oh oh TAKE me home!
Sing it loud
"""
LYRICS = [FIXTURE, ODD]
IDS = range(24)
MINOR = {"Cm", "C#m", "Dm", "Ebm", "Em", "Fm", "F#m", "Gm", "G#m", "Am", "Bbm", "Bm"}
NAMES = {n: i for i, n in enumerate(["C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B"])}
NAMES |= {"Db": 1, "G#": 8}


def parse(data: bytes) -> dict:
    """What the file says, in absolute ticks: text events, melody notes, chord-track notes, key."""
    midi = mido.MidiFile(file=io.BytesIO(data), charset="utf-8")
    out = {"midi": midi, "tracks": {}, "notes": {}, "deltas_ok": True}
    for track in midi.tracks:
        tick, events, on = 0, [], {}
        for msg in track:
            out["deltas_ok"] &= msg.time >= 0
            tick += msg.time
            events.append((tick, msg))
        out["tracks"][track.name] = events
        notes = []
        for t, msg in events:
            if msg.type == "note_on" and msg.velocity > 0:
                on[(msg.channel, msg.note)] = t
            elif msg.type in ("note_off", "note_on"):
                notes.append((on.pop((msg.channel, msg.note)), t, msg.note, msg.channel))
        out["notes"][track.name] = sorted(notes)
    out["key"] = next(m.key for _, m in out["tracks"]["Billion Songs"] if m.type == "key_signature")
    out["words"] = [(t, m.text) for t, m in out["tracks"]["Words"] if m.type == "text" and not m.text.startswith("@")]
    return out


def kar_lines(words: list[tuple[int, str]]) -> list[list[tuple[str, list[int]]]]:
    """Rebuild lines of words from .kar syllable events: '\\' or '/' starts a line, ' ' starts a word.
    Each word carries the ticks of its syllables."""
    lines: list[list] = []
    for tick, text in words:
        if text[:1] in "\\/":
            lines.append([])
            text = text[1:]
            lines[-1].append(["", []])
        elif text.startswith(" "):
            text = text[1:]
            lines[-1].append(["", []])
        lines[-1][-1][0] += text
        lines[-1][-1][1].append(tick)
    return lines


def sung_lines(lyrics: str) -> list[str]:
    return [ln.strip() for ln in lyrics.splitlines() if ln.strip() and not is_header(ln)]


def key_pcs(key: str) -> tuple[int, set[int]]:
    tonic = NAMES[key.removesuffix("m")]
    steps = (0, 2, 3, 5, 7, 8, 10) if key in MINOR else (0, 2, 4, 5, 7, 9, 11)
    return tonic, {(tonic + s) % 12 for s in steps}


def sounding(notes: list[tuple[int, int, int, int]], tick: int) -> set[int]:
    return {pitch % 12 for start, end, pitch, _ in notes if start <= tick < end}


def phrases(song: dict) -> list[list[tuple[int, int, int, int]]]:
    """Melody notes grouped by lyric line (a '/' or '\\' text event starts a line)."""
    starts = [t for t, text in song["words"] if text[:1] in "\\/"] + [float("inf")]
    melody = song["notes"]["Melody"]
    return [[n for n in melody if a <= n[0] < b] for a, b in zip(starts, starts[1:], strict=False)]


@pytest.fixture(scope="module")
def songs() -> dict:
    return {(i, k): parse(karaoke_bytes(i, TITLE, lyrics)) for i in IDS for k, lyrics in enumerate(LYRICS)}


def test_parses_as_karaoke_midi(songs):
    song = songs[(3, 0)]
    assert song["midi"].type == 1 and song["deltas_ok"]
    assert list(song["tracks"]) == ["Billion Songs", "Words", "Melody", "Chords", "Drums"]
    headers = [m.text for _, m in song["tracks"]["Billion Songs"] + song["tracks"]["Words"] if m.type == "text"]
    assert "@KMIDI KARAOKE FILE" in headers and f"@T{TITLE}" in headers
    drums = song["notes"]["Drums"]
    assert drums and {ch for *_, ch in drums} == {9}
    assert {36, 38, 42} <= {pitch for _, _, pitch, _ in drums}
    assert song["notes"]["Chords"] and song["midi"].length > 20


def test_lyric_events_cover_every_word_in_order(songs):
    for (i, k), song in songs.items():
        got = [[word for word, _ in line] for line in kar_lines(song["words"])]
        assert got == [line.split() for line in sung_lines(LYRICS[k])], (i, k)
        lyric_meta = "".join(m.text for _, m in song["tracks"]["Melody"] if m.type == "lyrics")
        assert lyric_meta == "".join("".join(line.split()) for line in sung_lines(LYRICS[k]))


def test_every_syllable_is_a_sung_note_and_time_moves_forward(songs):
    for song in songs.values():
        ticks = [t for t, _ in song["words"]]
        assert ticks == sorted(set(ticks)), "two syllables at once or out of order"
        melody = song["notes"]["Melody"]
        assert [start for start, *_ in melody] == ticks
        assert all(a[1] <= b[0] for a, b in zip(melody, melody[1:], strict=False)), "melody overlaps itself"
        assert all(start < end for start, end, *_ in melody)


def test_melody_in_key_except_leading_tone_over_dominant(songs):
    """Every melody pitch class is in the key's scale (natural minor for minor keys), with one exception:
    in a minor key the raised 7th (tonic - 1 semitone) is allowed when the chord track sounds that same
    pitch class at the note's start (the harmonic-minor V chord)."""
    raised = 0
    for song in songs.values():
        tonic, scale = key_pcs(song["key"])
        for start, _, pitch, _ in song["notes"]["Melody"]:
            if pitch % 12 in scale:
                continue
            assert song["key"] in MINOR and pitch % 12 == (tonic - 1) % 12, (song["key"], pitch)
            assert pitch % 12 in sounding(song["notes"]["Chords"], start)
            raised += 1
    assert raised > 0, "no minor-key leading tone in the sample: the exception is untested"


def test_phrases_end_on_chord_tones_and_sections_on_the_tonic(songs):
    for (i, k), song in songs.items():
        tonic, _ = key_pcs(song["key"])
        lines = phrases(song)
        section_end = [text[:1] == "\\" for _, text in song["words"] if text[:1] in "\\/"][1:] + [True]
        for line, ends in zip(lines, section_end, strict=True):
            start, _, pitch, _ = line[-1]
            assert pitch % 12 in sounding(song["notes"]["Chords"], start), (i, k)
            if ends:
                assert pitch % 12 == tonic, (i, k, song["key"])


def test_mostly_stepwise_and_singable(songs):
    steps = leaps = 0
    for song in songs.values():
        for line in phrases(song):
            pitches = [p for _, _, p, _ in line]
            assert max(pitches) - min(pitches) <= 19
            for a, b in zip(pitches, pitches[1:], strict=False):
                assert abs(a - b) <= 7, "a leap wider than a fifth"
                steps += abs(a - b) <= 2
                leaps += abs(a - b) > 4
    total = steps + leaps
    assert steps / total > 0.75 and leaps / total < 0.1


def test_stressed_syllables_fall_on_beats():
    """The stressed syllable of dictionary words of two or more syllables starts on a beat (a quarter note)."""
    arr = arrange(5, TITLE, FIXTURE)
    stressed = [n for n in arr.notes if n.stress == 1]
    on_beat = sum(n.start % 4 == 0 for n in stressed)
    assert on_beat / len(stressed) >= 0.8
    take_me_home = [n for n in arr.notes if n.text in ("take", "home")]
    assert all(n.start % 4 == 0 for n in take_me_home)


def test_repeated_lines_get_identical_music(songs):
    for (i, k), song in songs.items():
        lines = dict(enumerate(sung_lines(LYRICS[k])))
        music = phrases(song)
        by_text: dict[str, list] = {}
        for n, text in lines.items():
            key = " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())
            start = music[n][0][0] - music[n][0][0] % (4 * 480)  # from the phrase's first bar
            by_text.setdefault(key, []).append([(s - start, e - s, p) for s, e, p, _ in music[n]])
        repeated = [v for v in by_text.values() if len(v) > 1]
        assert repeated, "the sample lyrics have repeated lines"
        for versions in repeated:
            assert all(v == versions[0] for v in versions), (i, k)


def test_same_input_same_bytes_and_ids_differ():
    first = karaoke_bytes(12345, TITLE, FIXTURE)
    assert karaoke_bytes(12345, TITLE, FIXTURE) == first
    melodies = {tuple(n.pitch for n in arrange(i, TITLE, FIXTURE).notes) for i in range(20)}
    assert len(melodies) == 20
    assert karaoke_bytes(2**63 - 1, TITLE, FIXTURE) != first


def test_timings_match_the_file(songs):
    for (i, k), song in list(songs.items())[:6]:
        bpm = mido.tempo2bpm(next(m.tempo for _, m in song["tracks"]["Billion Songs"] if m.type == "set_tempo"))
        timings = syllable_timings(i, TITLE, LYRICS[k])
        seconds = [t / 480 * 60 / bpm for t, _ in song["words"]]
        assert seconds == pytest.approx([t for t, *_ in timings], abs=0.001)
        texts = [text.lstrip("\\/ ") for _, text in song["words"]]
        assert texts == [s for *_, s in timings]
        rows = LYRICS[k].splitlines()
        for _, line, word, syllable in timings:
            assert syllable in rows[line].split()[word]


def test_markup_text_is_the_lyrics_and_spans_follow_the_song():
    for lyrics in LYRICS:
        markup = karaoke_markup(7, TITLE, lyrics)
        assert html.unescape(re.sub(r"<[^>]+>", "", markup)) == "\n".join(lyrics.splitlines())
        times = [float(t) for t in re.findall(r'class="syl" data-t="([\d.]+)"', markup)]
        assert times == sorted(times) and times == [t for t, *_ in syllable_timings(7, TITLE, lyrics)]
        assert len(karaoke_lines(7, TITLE, lyrics)) == len(lyrics.splitlines())
    assert "<script>" not in karaoke_markup(1, "x", "<script>alert(1)</script> & more")


def test_songs_without_lyrics_still_make_a_file():
    for lyrics in ("", "\n\n", "[Instrumental]"):
        song = parse(karaoke_bytes(1, "", lyrics))
        assert song["words"] == [] and song["notes"]["Melody"] == [] and song["notes"]["Chords"]
        assert syllable_timings(1, "", lyrics) == []
