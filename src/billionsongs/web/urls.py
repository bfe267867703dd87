"""Site routes: songs at the root, votes and accounts beside them, the admin under /admin/, and the
files crawlers and browsers ask for by name."""

from django.contrib import admin
from django.urls import include, path

from billionsongs.web import site

urlpatterns = [
    path("robots.txt", site.robots_txt, name="robots"),
    path("favicon.ico", site.favicon, name="favicon"),
    path("", include("billionsongs.web.songs.urls")),
    path("", include("billionsongs.web.votes.urls")),
    path("accounts/", include("billionsongs.web.accounts.urls")),
    path("admin/", admin.site.urls),
]
