"""A user's vote on a song: +1 or -1, one per (user, song), enforced by the database."""

from django.conf import settings
from django.db import models

from billionsongs.web.songs.models import Song


class Vote(models.Model):
    UP = 1
    DOWN = -1
    VALUES = ((UP, "up"), (DOWN, "down"))

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="votes")
    song = models.ForeignKey(Song, on_delete=models.CASCADE, related_name="votes")
    value = models.SmallIntegerField(choices=VALUES)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "song"], name="one_vote_per_user_and_song"),
            models.CheckConstraint(condition=models.Q(value__in=[1, -1]), name="vote_is_up_or_down"),
        ]
        indexes = [models.Index(fields=["user", "-updated"], name="vote_by_user")]

    def __str__(self) -> str:
        return f"{self.user} {'▲' if self.value == self.UP else '▼'} song {self.song_id}"
