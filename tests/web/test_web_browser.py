"""One real browser session: Debian's Chromium, driven by Playwright, with JavaScript switched off.

Open /, read the lyrics, vote and sign up through the vote widget, see the count change, find the song on
/top/, and watch a song being written turn into its page by itself; with JavaScript on, follow a song
being written live until it fails, press Play and follow the karaoke highlight. Screenshots go to
test-output/browser/.
"""

import os
import re
from pathlib import Path

import pytest

from billionsongs.web.songs.models import Song, Status

CHROMIUM = Path("/usr/bin/chromium")
SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "browser"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--no-first-run", "--disable-sync"]
LYRICS = """I was walking home in the rain tonight
Every light in the city burning bright
Every window singing out of time

Oh oh, take me home
Oh oh, take me home
Down the river where the streetlights shine

You said forever, I said maybe so
We were dancing slow on the radio
Oh oh, take me home"""


@pytest.fixture
def chromium():
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def site(live_server, settings, monkeypatch):
    # Playwright's sync API runs an event loop in this thread; the ORM calls below are still synchronous.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    settings.WRITING_REFRESH_SECONDS = 1
    Song.objects.create(id=2026, title="Walking Home", lyrics=LYRICS, model="tiny", status=Status.DONE)
    SHOTS.mkdir(parents=True, exist_ok=True)
    return live_server.url


def test_read_sign_up_vote_and_find_the_song_on_top(chromium, site):
    context = chromium.new_context(java_script_enabled=False, color_scheme="light",
                                   viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)

    page.goto(site + "/")
    assert page.url == f"{site}/song/2026/"
    assert page.locator("h1").inner_text() == "Walking Home"
    lyrics = page.locator(".lyrics").inner_text()
    assert "I was walking home in the rain tonight\nEvery light in the city burning bright" in lyrics
    assert page.locator(".lyrics .verse").count() == 3
    # The karaoke player needs JavaScript: without it the Play button is hidden, the MIDI file is a link.
    assert page.locator("button.karaoke-play").is_hidden()
    assert page.locator("a.karaoke-download").get_attribute("href") == "/song/2026/karaoke.mid"
    votes = page.frame_locator("iframe.vote-frame")
    assert votes.locator("[data-count=up]").inner_text() == "0"
    page.screenshot(path=SHOTS / "song-light.png", full_page=True)

    # Voting anonymously leads to logging in; from there, sign up and come back to the song, the vote cast.
    votes.locator("button.vote-button.up").click()
    page.wait_for_url(re.compile(r"/accounts/login/\?next=/song/2026/$"))
    page.get_by_role("link", name="Sign up").click()
    page.fill("input[name=username]", "listener")
    page.fill("input[name=email]", "listener@example.org")
    page.fill("input[name=password1]", "a song for every number")
    page.fill("input[name=password2]", "a song for every number")
    page.screenshot(path=SHOTS / "signup.png", full_page=True)
    page.get_by_role("button", name="Sign up").click()
    page.wait_for_url(f"{site}/song/2026/")

    votes = page.frame_locator("iframe.vote-frame")
    votes.locator("text=You voted up.").wait_for()
    assert votes.locator("[data-count=up]").inner_text() == "1"
    assert votes.locator("[data-count=down]").inner_text() == "0"
    assert Song.objects.get(pk=2026).score == 1
    page.screenshot(path=SHOTS / "song-voted.png", full_page=True)

    page.get_by_role("link", name="Top").click()
    entry = page.locator(".chart-list li", has_text="Walking Home")
    assert entry.count() == 1
    assert "▲ 1" in entry.inner_text()
    page.screenshot(path=SHOTS / "top.png", full_page=True)

    page.get_by_role("link", name="My votes").click()
    assert "Walking Home" in page.locator(".chart-list").inner_text()
    context.close()


def test_dark_mode_small_screen_and_a_song_being_written(chromium, site):
    context = chromium.new_context(java_script_enabled=False, color_scheme="dark",
                                   viewport={"width": 390, "height": 844}, device_scale_factor=2)
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(site + "/song/2026/")
    # On a phone the vote widget wraps to two lines; the frame must be tall enough to show both.
    frame_box = page.locator("iframe.vote-frame").bounding_box()
    status_box = page.frame_locator("iframe.vote-frame").locator(".vote-status").bounding_box()
    assert status_box["y"] + status_box["height"] <= frame_box["y"] + frame_box["height"]
    page.screenshot(path=SHOTS / "song-dark-mobile.png", full_page=True)
    # Without JavaScript, a song not written yet says so and reloads itself until it is ready.
    page.goto(site + "/song/77/")
    assert "being written" in page.locator("h1").inner_text()
    page.screenshot(path=SHOTS / "writing-dark-mobile.png", full_page=True)
    Song.objects.filter(pk=77).update(status=Status.DONE, title="Written While You Waited", lyrics="La la la")
    page.locator("h1", has_text="Written While You Waited").wait_for()
    context.close()

    # Colours are read with JavaScript on (the site itself has none) to check the dark palette applies.
    for scheme, expected in (("dark", "rgb(20, 19, 24)"), ("light", "rgb(250, 247, 242)")):
        context = chromium.new_context(color_scheme=scheme, viewport={"width": 1100, "height": 900})
        page = context.new_page()
        page.goto(site + "/song/2026/")
        assert page.evaluate("getComputedStyle(document.body).backgroundColor") == expected
        if scheme == "dark":
            page.screenshot(path=SHOTS / "song-dark.png", full_page=True)
        context.close()


def test_live_writing_says_when_it_waits_and_a_failed_song_ends_as_its_url_asks(chromium, site):
    """With JavaScript the writing page follows the stream. A song still queued keeps saying it waits
    (not "0 tokens written"); a song that fails ends on "No song here" when its number was asked for by
    name, and on another song only where a random pick (?fallback=random) brought the visitor."""
    context = chromium.new_context(color_scheme="light", viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    with page.expect_response(lambda response: "/song/88/stream/" in response.url):
        page.goto(site + "/song/88/")
    page.wait_for_timeout(500)  # the stream's first event (0 tokens: still queued) has arrived and been handled
    label = page.locator("[data-progress]")
    assert label.inner_text() == "Waiting for a free writer…"
    Song.objects.filter(pk=88).update(status=Status.GENERATING, progress=3, partial="Rain on the")
    page.locator("[data-live]", has_text="Rain on the").wait_for()
    assert label.inner_text().startswith("3 tokens written so far")
    # Once its first line is a title (a blank line follows), it shows apart, as on the finished page.
    Song.objects.filter(pk=88).update(progress=9, partial="Rain on the Roof\n\nI was\n\n\n\nwalking")
    page.locator("[data-live-title]", has_text="Rain on the Roof").wait_for()
    assert page.locator("[data-live]").inner_text() == "I was\n\nwalking"
    # Its worker died and the song is queued again: the page says it waits, not that it has 3 tokens.
    Song.objects.filter(pk=88).update(status=Status.PENDING, progress=0, partial="")
    page.locator("[data-progress]", has_text="Waiting for a free writer…").wait_for()
    assert page.locator("[data-live]").inner_text() == "" and page.locator("[data-bar]").is_hidden()
    assert page.locator("[data-live-title]").inner_text() == ""
    Song.objects.filter(pk=88).update(status=Status.FAILED)
    page.locator("h1", has_text="No song here").wait_for()
    assert page.url == site + "/song/88/"

    page.goto(site + "/song/89/?fallback=random")
    assert "being written" in page.locator("h1").inner_text()
    Song.objects.filter(pk=89).update(status=Status.FAILED)
    page.locator("h1", has_text="Walking Home").wait_for()  # the only written song
    assert page.url == site + "/song/2026/"
    context.close()


def test_with_no_free_stream_slot_the_page_still_follows_the_writing(chromium, site, settings):
    """Streams hold a request thread, so a process runs only a few; the pages past that poll the song's
    progress instead of reloading, and still turn into the song when it is written."""
    settings.STREAM_SLOTS, settings.STREAM_POLL_SECONDS = 0, 0.25
    context = chromium.new_context(color_scheme="light", viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    with page.expect_response(lambda response: "/song/77/progress/" in response.url):
        page.goto(site + "/song/77/")
    Song.objects.filter(pk=77).update(status=Status.GENERATING, progress=5, partial="Night Drive\n\nheadlights on")
    page.locator("[data-live-title]", has_text="Night Drive").wait_for()
    assert page.locator("[data-live]").inner_text() == "headlights on"
    assert page.locator("[data-progress]").inner_text().startswith("5 tokens written so far")
    Song.objects.filter(pk=77).update(status=Status.DONE, title="Night Drive", lyrics=LYRICS, model="tiny")
    page.locator("h1", has_text="Night Drive").wait_for()
    assert page.url == site + "/song/77/" and page.locator("[data-live]").count() == 0
    context.close()


def test_play_the_karaoke_track_and_follow_the_highlight(chromium, site):
    context = chromium.new_context(color_scheme="light", viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    page.goto(site + "/song/2026/")
    play = page.locator("button.karaoke-play")
    assert play.is_visible() and play.inner_text() == "Play"
    assert page.locator("#lyrics-2026 .syl").count() > 50
    play.click()
    page.wait_for_selector("button.karaoke-play[data-karaoke-state=playing]")
    assert play.inner_text() == "Stop"
    # The first syllable is sung after a bar or two of introduction, then the highlight moves on.
    first = float(page.wait_for_selector("#lyrics-2026 .syl.bs-now").get_attribute("data-t"))
    page.wait_for_function("t => { const s = document.querySelector('#lyrics-2026 .syl.bs-now');"
                           " return s && parseFloat(s.dataset.t) > t + 0.5; }", arg=first)
    later = float(page.locator(".syl.bs-now").get_attribute("data-t"))
    assert later > first
    assert page.locator(".syl.bs-now").count() == 1 and page.locator(".syl.bs-sung").count() >= 2
    page.screenshot(path=SHOTS / "song-karaoke.png", full_page=True)
    play.click()  # pressing again stops and clears the highlight
    assert play.get_attribute("data-karaoke-state") == "stopped"
    assert page.locator(".syl.bs-now, .syl.bs-sung").count() == 0
    assert play.inner_text() == "Play"
    context.close()
