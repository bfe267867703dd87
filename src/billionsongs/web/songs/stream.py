"""`/song/<id>/stream/`: Server-Sent Events with a song's text while it is being written.

The site runs under granian's WSGI interface, where each open response holds one of a process's
request threads. So streams are kept from starving ordinary pages in two ways:

- bounded duration: one response lasts at most STREAM_SECONDS (default 20 s), then ends with a
  `retry:` hint and the browser's EventSource reconnects (a long poll in SSE framing). A stalled or
  forgotten tab costs at most one thread for that long, and a song of several minutes is a series of
  short requests that any process can answer;
- a thread budget: at most STREAM_SLOTS streams at once per web process (`serve` sets it to a quarter
  of its threads: more threads would slow every page, README). Past that the answer is 204 No Content,
  which tells EventSource to stop; the page then polls `/song/<id>/progress/` (`song_progress`: the
  same state, answered at once, holding no thread) every STREAM_POLL_SECONDS, so every visitor still
  sees the song being written, and only without JavaScript does the page reload itself.

Events: `progress` {title, text, tokens, max_tokens}, then `done` {url} (the page loads the finished
song, now the normal cacheable page) or `failed` {url}. `song_progress` answers one of them as JSON,
with its name under "event".
"""

import json
import threading

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_safe

from billionsongs.web.songs import progress
from billionsongs.web.songs.models import Song

_slots_lock = threading.Lock()
_open_streams = 0


def _take_slot() -> bool:
    global _open_streams
    with _slots_lock:
        if _open_streams >= settings.STREAM_SLOTS:
            return False
        _open_streams += 1
        return True


def _give_slot() -> None:
    global _open_streams
    with _slots_lock:
        _open_streams -= 1


def _event(name: str, data: dict) -> str:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n"


@require_safe
def song_stream(request: HttpRequest, song_id: str) -> HttpResponse:
    from billionsongs.web.songs.views import song_id_or_404

    number = song_id_or_404(song_id)
    song = Song.objects.filter(pk=number).only("hidden").first()
    if song is None or song.hidden:
        return _no_stream(404)
    if not _take_slot():
        return _no_stream(204)
    url = reverse("song", args=[number])

    def body():
        try:
            yield f"retry: {int(settings.STREAM_RETRY_SECONDS * 1000)}\n\n"
            for name, data in progress.events(number, settings.STREAM_SECONDS):
                if name != "progress":
                    data = {"url": url}
                yield _event(name, data)
        finally:
            _give_slot()

    response = StreamingHttpResponse(body(), content_type="text/event-stream")
    add_never_cache_headers(response)
    response["X-Accel-Buffering"] = "no"  # nginx and similar proxies: pass events on at once
    return response


@require_safe
def song_progress(request: HttpRequest, song_id: str) -> HttpResponse:
    from billionsongs.web.songs.views import song_id_or_404

    number = song_id_or_404(song_id)
    song = Song.objects.filter(pk=number).only("status", "partial", "progress", "hidden").first()
    if song is None or song.hidden:
        return _no_stream(404)
    final = progress.final_event(song.status)
    state = {"event": final[0], "url": reverse("song", args=[number])} if final else {
        "event": "progress", **progress.current(song)}
    response = JsonResponse(state)
    add_never_cache_headers(response)
    return response


def _no_stream(status: int) -> HttpResponse:
    response = HttpResponse(status=status)
    add_never_cache_headers(response)
    return response
