from django.apps import AppConfig


class SongsConfig(AppConfig):
    name = "billionsongs.web.songs"
    label = "songs"
    verbose_name = "Songs"

    def ready(self) -> None:
        from billionsongs.web.songs import signals  # noqa: F401  (connects the page-cache invalidation)
