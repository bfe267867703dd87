"""Production settings, with the probe route added (DJANGO_SETTINGS_MODULE=webprobe.settings)."""

from billionsongs.web.settings import *  # noqa: F403

ROOT_URLCONF = "webprobe.urls"
