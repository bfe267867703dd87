"""Keep derived data right when rows change outside `cast_vote`.

- An admin saving a song (e.g. hiding it) drops the cached Top chart, so the song leaves it at once.
- A vote deleted any other way (admin, or a user account deleted with its votes) recounts its song.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from billionsongs.web.songs.models import Song
from billionsongs.web.votes.models import Vote
from billionsongs.web.votes.services import invalidate_top, recount


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
