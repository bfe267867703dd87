from django.apps import AppConfig


class VotesConfig(AppConfig):
    name = "billionsongs.web.votes"
    label = "votes"
    verbose_name = "Votes"

    def ready(self) -> None:
        from billionsongs.web.votes import signals  # noqa: F401  (connects the Top-cache invalidation)
