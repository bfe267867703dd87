"""Keep derived data right when rows change outside `cast_vote`.

- An admin saving a song (e.g. hiding it) drops the cached Top chart, so the song leaves it at once.
- A vote deleted any other way (admin, or a user account deleted with its votes) recounts its song.
- A vote clicked before logging in (kept in the session by `views.vote`) is cast when the voter logs in
  or signs up, whichever login happens next.
"""

from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from billionsongs.web.songs.models import Song
from billionsongs.web.votes.models import Vote
from billionsongs.web.votes.services import PENDING_VOTE, VOTE_VALUES, cast_vote, invalidate_top, recount


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
    pending = request.session.pop(PENDING_VOTE, None) if request is not None and hasattr(request, "session") else None
    if not pending:
        return
    number, name = pending
    if name in ("up", "down") and Song.objects.visible().filter(pk=number).exists():
        cast_vote(user, number, VOTE_VALUES[name])
