"""Song admin: browse the queue and hide songs (hidden songs 404 and leave Top and random picks)."""

from django.contrib import admin, messages

from billionsongs.web.songs.models import Song


@admin.register(Song)
class SongAdmin(admin.ModelAdmin):
    list_display = ("id", "title", "status", "hidden", "score", "up_votes", "down_votes", "created")
    list_filter = ("status", "hidden")
    search_fields = ("=id", "title")
    ordering = ("-created",)
    actions = ("hide", "unhide")
    fields = ("id", "status", "hidden", "title", "lyrics", "model", "tokens", "error", "up_votes", "down_votes",
              "score", "created", "generated", "attempts")
    readonly_fields = ("id", "status", "title", "lyrics", "model", "tokens", "error", "up_votes", "down_votes",
                       "score", "created", "generated", "attempts")

    def has_add_permission(self, request) -> bool:
        return False  # rows are created by requesting /song/<id>/, which queues generation

    @admin.action(description="Hide selected songs")
    def hide(self, request, queryset) -> None:
        self._set_hidden(request, queryset, True)

    @admin.action(description="Show selected songs again")
    def unhide(self, request, queryset) -> None:
        self._set_hidden(request, queryset, False)

    def _set_hidden(self, request, queryset, hidden: bool) -> None:
        # save() per row rather than update(), so post_save listeners (the Top chart cache) hear of it.
        for song in queryset:
            song.hidden = hidden
            song.save(update_fields=["hidden"])
        self.message_user(request, f"{queryset.count()} songs {'hidden' if hidden else 'shown'}.", messages.SUCCESS)
