"""The vote widget (a separate, private page framed by the public song page), voting, Top and my votes."""

import time

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.views import redirect_to_login
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.cache import patch_cache_control
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_POST, require_safe

from billionsongs.web.songs.models import Song
from billionsongs.web.songs.views import song_id_or_404
from billionsongs.web.votes.models import Vote
from billionsongs.web.votes.services import PENDING_VOTE, VOTE_VALUES, cast_vote, top_songs, user_vote


def _private(response: HttpResponse) -> HttpResponse:
    """Per-visitor content: never stored by shared caches, never reused by the browser."""
    patch_cache_control(response, private=True, no_store=True, max_age=0)
    return response


@require_safe
def widget(request: HttpRequest, song_id: str) -> HttpResponse:
    number = song_id_or_404(song_id)
    song = get_object_or_404(Song.objects.visible(), pk=number)
    return _private(render(request, "votes/widget.html", {
        "song": song,
        "my_vote": user_vote(request.user, song.id),
        "song_url": reverse("song", args=[song.id]),
    }))


@require_POST
def vote(request: HttpRequest, song_id: str) -> HttpResponse:
    """Record a vote (CSRF-checked by middleware). An anonymous voter logs in or signs up first and returns
    to the song, and the vote they clicked is kept in their session and cast as they log in, if that is
    within `PENDING_VOTE_SECONDS` (`signals.cast_pending_vote`): they should not have to click it twice."""
    number = song_id_or_404(song_id)
    song_url = reverse("song", args=[number])
    name = request.POST.get("value", "")
    value = VOTE_VALUES.get(name)
    if not request.user.is_authenticated:
        if value:  # up or down; "clear" means nothing without a vote to clear
            request.session[PENDING_VOTE] = [number, name, time.time()]
        return _private(redirect_to_login(song_url))
    if value is None:
        return HttpResponseBadRequest("vote must be up, down or clear")
    if not Song.objects.visible().filter(pk=number).exists():
        raise Http404("This number has no song.")
    cast_vote(request.user, number, value)
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        target = song_url
    response = HttpResponseRedirect(target, status=303)
    return _private(response)


@require_safe
def top(request: HttpRequest) -> HttpResponse:
    """The ten best-scored songs; the same for everyone, so cached (server and browser) for a few minutes."""
    response = render(request, "votes/top.html", {"songs": top_songs(timeout=settings.TOP_CACHE_SECONDS)})
    patch_cache_control(response, public=True, max_age=settings.TOP_CACHE_SECONDS)
    return response


@never_cache
@login_required
@require_safe
def my_votes(request: HttpRequest) -> HttpResponse:
    votes = Vote.objects.filter(user=request.user).select_related("song").order_by("-updated", "-pk")
    page = Paginator(votes, 50).get_page(request.GET.get("page"))
    return _private(render(request, "votes/my_votes.html", {"page": page}))
