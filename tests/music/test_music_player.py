"""The browser player (static karaoke.js): its MIDI parser agrees with mido, and in Chromium pressing
play highlights syllable after syllable."""

import functools
import http.server
import io
import json
import shutil
import subprocess
import threading
from pathlib import Path

import mido
import pytest

import billionsongs.music
from billionsongs.music import arrange, karaoke_bytes, karaoke_markup

STATIC = Path(billionsongs.music.__file__).parent / "static" / "billionsongs" / "music"
LYRICS = "I was walking home in the rain tonight\nEvery light in the city burning bright\n\nOh oh, take me home"


def test_js_parser_reads_the_notes_mido_reads(tmp_path):
    if not shutil.which("node"):
        pytest.skip("node not installed")
    data = karaoke_bytes(9, "Walking Home", LYRICS)
    (tmp_path / "song.mid").write_bytes(data)
    script = (f"eval(require('fs').readFileSync({json.dumps(str(STATIC / 'karaoke.js'))}, 'utf8'));"
              "const b = require('fs').readFileSync('song.mid');"
              "const s = BillionSongsKaraoke.parseMidi(b.buffer.slice(b.byteOffset, b.byteOffset + b.length));"
              "console.log(JSON.stringify(s.notes.map(n => [Math.round(n.time * 1000), n.ch, n.note])));")
    got = json.loads(subprocess.run(["node", "-e", script], cwd=tmp_path, capture_output=True, text=True,
                                     check=True, timeout=30).stdout)
    want, now = [], 0.0
    for msg in mido.MidiFile(file=io.BytesIO(data)):  # iterating a MidiFile yields seconds between messages
        now += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            want.append([round(now * 1000), msg.channel, msg.note])
    assert sorted(got) == sorted(want) and len(got) > 100


def _chromium():
    sync_api = pytest.importorskip("playwright.sync_api")
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.skip("chromium not installed (make browser)")
    return sync_api, path


def test_pressing_play_moves_the_highlight(tmp_path):
    sync_api, chromium = _chromium()
    song_id = max(range(40), key=lambda i: arrange(i, "x", LYRICS).bpm)  # fastest intro, shortest test
    (tmp_path / "karaoke.mid").write_bytes(karaoke_bytes(song_id, "Walking Home", LYRICS))
    for name in ("karaoke.js", "karaoke.css"):
        shutil.copy(STATIC / name, tmp_path / name)
    (tmp_path / "index.html").write_text(
        '<!doctype html><link rel="stylesheet" href="karaoke.css"><script src="karaoke.js" defer></script>'
        '<button data-karaoke-play="karaoke.mid" data-karaoke-lyrics="lyrics">Play</button>'
        f'<div id="lyrics" class="bs-karaoke">{karaoke_markup(song_id, "Walking Home", LYRICS)}</div>')
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--autoplay-policy=no-user-gesture-required"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/index.html")
            page.click("button")
            page.wait_for_selector("button[data-karaoke-state=playing]", timeout=5000)
            first = page.wait_for_selector(".syl.bs-now", timeout=10000).get_attribute("data-t")
            page.wait_for_function("t => { const s = document.querySelector('.syl.bs-now');"
                                   " return s && s.dataset.t !== t; }", arg=first, timeout=5000)
            assert page.locator(".syl.bs-now").count() == 1 and page.locator(".syl.bs-sung").count() >= 1
            assert page.text_content("button") == "Stop"
            page.click("button")
            assert page.locator(".syl.bs-now").count() == 0
            assert page.get_attribute("button", "data-karaoke-state") == "stopped"
            browser.close()
    finally:
        server.shutdown()
