"""The site's routes plus /probe/cached/: a minimal Django view behind `cache_page`, with a body the size of
a song page, so its requests/s is what the framework and server give a page that costs nothing to make."""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.cache import cache_page

from billionsongs.web.urls import urlpatterns as site

BODY = ("<!doctype html><title>probe</title>" + "<p>" + "la " * 1300 + "</p>")[:4096]


@cache_page(3600)
def probe(request):
    return HttpResponse(BODY)


urlpatterns = [path("probe/cached/", probe), *site]
