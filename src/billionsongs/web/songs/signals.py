"""Drop a song's cached page whenever its row is saved (hidden, shown, or edited in the admin), so the
next request renders it again, or 404s for a hidden song."""

from django.core.cache import cache
from django.db.models.signals import post_save
from django.dispatch import receiver

from billionsongs.web.songs.models import Song
from billionsongs.web.songs.views import page_cache_key


@receiver(post_save, sender=Song, dispatch_uid="songs.drop_cached_page")
def song_saved(sender, instance: Song, created: bool = False, **kwargs) -> None:
    if not created:  # a new row is a pending song, whose page is never cached
        cache.delete(page_cache_key(instance.pk))
