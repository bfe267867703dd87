"""Vote admin: read-only browsing and deletion (deletions recount the song, see signals.py)."""

from django.contrib import admin

from billionsongs.web.votes.models import Vote


@admin.register(Vote)
class VoteAdmin(admin.ModelAdmin):
    list_display = ("user", "song", "value", "updated")
    list_filter = ("value",)
    search_fields = ("user__username", "=song__id")
    raw_id_fields = ("user", "song")
    list_select_related = ("user", "song")

    def has_add_permission(self, request) -> bool:
        return False  # votes come from users through cast_vote, which keeps the song's counts

    def has_change_permission(self, request, obj=None) -> bool:
        return False
