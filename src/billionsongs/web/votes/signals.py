"""Keep derived data right when rows change outside `cast_vote`.

- An admin saving a song (e.g. hiding it) drops the cached Top chart, so the song leaves it at once.
- A vote deleted any other way (admin, or a user account deleted with its votes) recounts its song.
- A vote clicked before logging in (kept in the session by `views.vote`) is cast when the voter logs in
  or signs up, if that follows within `PENDING_VOTE_SECONDS`; an error casting it never fails the login.
"""

import logging
import time

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from billionsongs.web.songs.models import Song
from billionsongs.web.votes.models import Vote
from billionsongs.web.votes.services import (
    PENDING_VOTE,
    PENDING_VOTE_SECONDS,
    VOTE_VALUES,
    cast_vote,
    invalidate_top,
    recount,
)

log = logging.getLogger(__name__)


@receiver(post_save, sender=Song, dispatch_uid="votes.invalidate_top")
def song_saved(sender, instance: Song, created: bool = False, **kwargs) -> None:
    if not created:  # a new row is a pending song, never on the chart; requests create many of them
        invalidate_top()


@receiver(post_delete, sender=Vote, dispatch_uid="votes.recount_on_delete")
def vote_deleted(sender, instance: Vote, **kwargs) -> None:
    with transaction.atomic():
        song = Song.objects.select_for_update().filter(pk=instance.song_id).first()
        if song is not None:  # None when the song itself is being deleted
            recount(song)


@receiver(user_logged_in, dispatch_uid="votes.cast_pending_vote")
def cast_pending_vote(sender, request, user, **kwargs) -> None:
    session = getattr(request, "session", None)  # request is None for a login outside a request
    pending = session.pop(PENDING_VOTE, None) if session is not None else None
    if not pending:
        return
    try:
        number, name, clicked = pending
        value = VOTE_VALUES.get(name)  # as `views.vote` stored it: up or down, never clear
        fresh = time.time() - clicked <= PENDING_VOTE_SECONDS
        if value and fresh and Song.objects.visible().filter(pk=number).exists():
            with transaction.atomic():  # a savepoint: a failure leaves the login's own work intact
                cast_vote(user, number, value)
    except Exception:  # noqa: BLE001 - the login matters more than the vote: never fail it for this
        log.exception("could not cast the vote user %s clicked before logging in", user.pk)
