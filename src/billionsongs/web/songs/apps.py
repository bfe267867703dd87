from django.apps import AppConfig


class SongsConfig(AppConfig):
    name = "billionsongs.web.songs"
    label = "songs"
    verbose_name = "Songs"
