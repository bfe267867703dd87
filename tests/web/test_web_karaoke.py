"""Karaoke on the site: /song/<id>/karaoke.mid (bytes, headers, caching, 404s) and the player markup on the
song page (syllable spans that keep the lyrics' text and verses, the Play button, the static assets)."""

import html as htmllib
import io
import re

import mido
import pytest

from billionsongs.music import karaoke_bytes, syllable_timings
from billionsongs.web.songs import karaoke as site_karaoke
from billionsongs.web.songs.models import Song, Status

pytestmark = pytest.mark.django_db


def cache_control(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",") if part.strip()}


def visible_text(fragment: str) -> str:
    """What a reader sees of some markup: <br> and </p> as line breaks, other tags dropped."""
    fragment = re.sub(r"<br>", "\n", fragment)
    fragment = re.sub(r"</p>\s*", "\n\n", fragment)
    return htmllib.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def lyrics_block(page: str) -> str:
    return re.search(r'<div class="lyrics[^"]*" id="lyrics-\d+">(.*?)</div>', page, re.S).group(1)


def test_karaoke_file_is_the_songs_midi_with_lyrics(client, song):
    response = client.get("/song/42/karaoke.mid")
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/midi"
    assert response["Content-Disposition"] == 'inline; filename="billion-songs-42.mid"'
    assert response.content == karaoke_bytes(42, "Walking Home", song.lyrics)
    again = client.get("/song/42/karaoke.mid")
    assert again.content == response.content  # byte-identical on every request
    midi = mido.MidiFile(file=io.BytesIO(response.content))
    assert midi.type == 1 and len(midi.tracks) >= 4
    sung = [m.text for track in midi.tracks for m in track if m.type == "lyrics"]
    assert "".join(sung) == "".join(song.lyrics.split())  # one lyric event per syllable: every word, in order
    assert midi.length > 10


def test_karaoke_file_is_cached_like_the_song_page(client, song, user):
    page = client.get("/song/42/")
    response = client.get("/song/42/karaoke.mid")
    assert cache_control(response) == cache_control(page)
    assert "public" in cache_control(response)
    etag = response["ETag"]
    assert etag and not response.cookies and "Cookie" not in response.get("Vary", "")
    not_modified = client.get("/song/42/karaoke.mid", HTTP_IF_NONE_MATCH=etag)
    assert not_modified.status_code == 304 and not_modified.content == b""
    client.force_login(user)
    logged_in = client.get("/song/42/karaoke.mid")
    assert logged_in.content == response.content and logged_in["ETag"] == etag
    assert client.head("/song/42/karaoke.mid").status_code == 200
    assert client.post("/song/42/karaoke.mid").status_code == 405


@pytest.mark.parametrize("bad", ["abc", "-1", "1.5", str(2**63), "007", "+7", "%20"])
def test_malformed_ids_are_404(client, bad):
    assert client.get(f"/song/{bad}/karaoke.mid").status_code == 404
    assert Song.objects.count() == 0


def test_unwritten_failed_and_hidden_songs_have_no_file(client, make_song):
    make_song(1, status=Status.PENDING)
    make_song(2, status=Status.GENERATING)
    make_song(3, status=Status.FAILED)
    make_song(4, hidden=True)
    for song_id in (1, 2, 3, 4, 5):
        response = client.get(f"/song/{song_id}/karaoke.mid")
        assert response.status_code == 404, song_id
        assert "public" not in cache_control(response)
    # The file never asks for a song to be written: no row for 5, the others untouched.
    assert sorted(Song.objects.values_list("id", "status")) == [
        (1, Status.PENDING), (2, Status.GENERATING), (3, Status.FAILED), (4, Status.DONE)]


def test_song_page_has_the_player_and_syllables_that_keep_the_text(client, song):
    page = client.get("/song/42/").content.decode()
    assert ('<button type="button" class="button primary karaoke-play" data-karaoke-play="/song/42/karaoke.mid" '
            'data-karaoke-lyrics="lyrics-42">Play</button>') in page
    assert 'href="/song/42/karaoke.mid" download="billion-songs-42.mid"' in page
    assert '<div class="lyrics bs-karaoke" id="lyrics-42">' in page
    block = lyrics_block(page)
    timings = syllable_timings(42, "Walking Home", song.lyrics)
    starts = [float(t) for t in re.findall(r'<span class="syl" data-t="([0-9.]+)"', block)]
    assert starts == pytest.approx([t for t, *_ in timings], abs=0.001)
    assert starts == sorted(starts)
    # Without JavaScript it reads as before: the same verses and lines, nothing added.
    assert visible_text(block) == "\n\n".join("\n".join(verse) for verse in song.verses())
    assert block.count('<p class="verse">') == 2
    for asset in ("billionsongs/music/karaoke.css", "billionsongs/music/karaoke.js"):
        assert f'"/static/{asset}"' in page
        served = client.get(f"/static/{asset}")
        assert served.status_code == 200 and b"bs-now" in b"".join(served.streaming_content)
    assert "<noscript><style>.karaoke-play { display: none; }</style></noscript>" in page


def test_lyrics_are_escaped_and_odd_spacing_keeps_its_verses(client, make_song):
    lyrics = "\n  \n<b>Bold</b> & \"quoted\"  \n\n\n\n  second   verse here\n[Chorus]\nla la\n\n"
    song = make_song(7, title="Odd <Title>", lyrics=lyrics)
    page = client.get("/song/7/").content.decode()
    block = lyrics_block(page)
    assert "<b>" not in block and "&lt;b&gt;Bold&lt;/b&gt;" in block
    assert [line.split() for line in visible_text(block).split("\n")] == [
        ["<b>Bold</b>", "&", '"quoted"'], [], ["second", "verse", "here"], ["[Chorus]"], ["la", "la"]]
    assert block.count('<p class="verse">') == len(song.verses()) == 2
    assert client.get("/song/7/karaoke.mid").status_code == 200


def test_music_failure_leaves_a_plain_page_and_a_404_file(client, song, monkeypatch):
    def broken(*args):
        raise ValueError("no tune for these words")

    monkeypatch.setattr(site_karaoke, "karaoke_markup", broken)
    monkeypatch.setattr(site_karaoke, "karaoke_bytes", broken)
    response = client.get("/song/42/")
    assert response.status_code == 200
    page = response.content.decode()
    assert "karaoke-play" not in page and "karaoke.js" not in page and 'class="syl"' not in page
    assert "I was walking home in the rain tonight<br>Every light in the city burning bright" in page
    assert client.get("/song/42/karaoke.mid").status_code == 404
