"""Song pages. A written song's page is the same for every visitor, so it is publicly cacheable."""

from django.conf import settings
from django.core.cache import cache
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.cache import add_never_cache_headers, patch_cache_control, set_response_etag
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from billionsongs.ids import InvalidSongId, parse_song_id
from billionsongs.web.songs import progress
from billionsongs.web.songs.karaoke import karaoke_file, karaoke_verses
from billionsongs.web.songs.models import Song, Status
from billionsongs.web.songs.picking import random_pick
from billionsongs.web.songs.queue import request_song

FALLBACK_RANDOM = "?fallback=random"


def song_id_or_404(text: str) -> int:
    """The song ID in a URL; anything malformed or out of range is a 404, never a 500."""
    try:
        return parse_song_id(text)
    except InvalidSongId:
        raise Http404("No song has that number.") from None


@never_cache
@require_safe
def random_song(request: HttpRequest) -> HttpResponse:
    """Redirect to a random song; a not-yet-written pick carries ?fallback=random in case it fails."""
    return _redirect_to_random()


@require_safe
def song_lookup(request: HttpRequest) -> HttpResponse:
    """The header's "Song #" box (?n=…): the page of the number typed. A person types "#1,234" or "007"
    as readily as "1234", so a leading #, separators and leading zeros are dropped here; the song's own
    URL stays the one spelling. Anything that is still not a song number is a 404."""
    text = request.GET.get("n", "").strip().lstrip("#").replace(",", "").replace(" ", "").replace("_", "")
    if text.isascii() and text.isdigit():
        text = text.lstrip("0") or "0"
    response = HttpResponseRedirect(reverse("song", args=[song_id_or_404(text)]))
    patch_cache_control(response, public=True, max_age=settings.SONG_CACHE_SECONDS)  # same answer for ever
    return response


def page_cache_key(song_id: int) -> str:
    return f"song-page:{song_id}"


@require_safe
def song_page(request: HttpRequest, song_id: str) -> HttpResponse:
    """A written song's page is rendered once and then served from the cache: it is the same for every
    visitor and never changes (hiding it deletes the entry, see signals.py). Rendering means a query,
    syllable markup for the karaoke player and a template; a cache hit is one cache read, which keeps
    this page as fast as a bare `cache_page` view (benchmarks/web.py)."""
    number = song_id_or_404(song_id)
    if not request.GET:
        cached = cache.get(page_cache_key(number))
        if cached is not None:
            return _written_page(*cached)
    song = Song.objects.filter(pk=number).first() or request_song(number)
    if song.hidden or song.status == Status.FAILED:
        if request.GET.get("fallback") == "random":
            return _redirect_to_random(exclude=number)
        raise Http404("This number has no song.")
    if song.is_waiting:
        return _writing_page(request, song)
    if request.GET:
        # One URL per song, so browser and CDN caches, shares and votes are not split by query strings.
        return HttpResponseRedirect(reverse("song", args=[song.id]))
    verses = karaoke_verses(song)  # lines as syllable spans for the player; None = plain lyrics
    html = render_to_string("songs/song.html", {
        "song": song,
        "page_url": request.build_absolute_uri(reverse("song", args=[song.id])),
        "karaoke": bool(verses),
        "verses": verses or song.verses(),
    })
    response = set_response_etag(HttpResponse(html))
    cache.set(page_cache_key(song.id), (response.content, response["ETag"]), settings.SONG_CACHE_SECONDS)
    return _written_page(response.content, response["ETag"])


def _written_page(content: bytes, etag: str) -> HttpResponse:
    """The page as stored: bytes and ETag computed once (ConditionalGetMiddleware answers If-None-Match)."""
    response = HttpResponse(content, headers={"ETag": etag})
    # A written song never changes: let browsers and CDNs keep it.
    patch_cache_control(response, public=True, max_age=settings.SONG_CACHE_SECONDS)
    return response


@require_safe
def song_karaoke(request: HttpRequest, song_id: str) -> HttpResponse:
    """The karaoke MIDI file of a written, visible song, cached like its page. Never queues a song: the
    file is linked from the written song's page only, so anything else is a 404."""
    song = Song.objects.visible().filter(pk=song_id_or_404(song_id)).first()
    data = karaoke_file(song) if song else None
    if data is None:
        raise Http404("This number has no song to play.")
    response = HttpResponse(data, content_type="audio/midi")
    response["Content-Disposition"] = f'inline; filename="billion-songs-{song.id}.mid"'
    # Same bytes for ever, like the page (ConditionalGetMiddleware adds the ETag and answers 304s).
    patch_cache_control(response, public=True, max_age=settings.SONG_CACHE_SECONDS)
    return response


def _writing_page(request: HttpRequest, song: Song) -> HttpResponse:
    """"Being written" page: streams the text as it is written (writing.js, `stream.py`), and without
    JavaScript reloads itself until the song is ready."""
    response = render(request, "songs/writing.html", {
        "song": song,
        "live": progress.current(song),
        "refresh_seconds": settings.WRITING_REFRESH_SECONDS,
        "poll_seconds": settings.STREAM_POLL_SECONDS,
        "refresh_url": request.get_full_path(),
    })
    add_never_cache_headers(response)  # the finished page must replace it at once, everywhere
    return response


def _redirect_to_random(exclude: int | None = None) -> HttpResponse:
    pick = random_pick(exclude=exclude)
    url = reverse("song", args=[pick.song_id])
    if not pick.visible and not Song.objects.visible().filter(pk=pick.song_id).exists():
        url += FALLBACK_RANDOM
    response = HttpResponseRedirect(url)
    add_never_cache_headers(response)
    return response
