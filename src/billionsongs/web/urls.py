"""Site routes: songs at the root, votes and accounts beside them, the admin under /admin/."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("", include("billionsongs.web.songs.urls")),
    path("", include("billionsongs.web.votes.urls")),
    path("accounts/", include("billionsongs.web.accounts.urls")),
    path("admin/", admin.site.urls),
]
