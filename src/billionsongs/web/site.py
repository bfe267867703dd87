"""The files every crawler and browser asks a site for by fixed name: /robots.txt and /favicon.ico.

Without them each visit logs a 404 (browsers fetch /favicon.ico whatever the page's icon link says),
and crawlers would wander into vote, stream and account URLs that are per-person or never finished.
"""

from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_safe

# What a crawler should skip: per-person pages, vote endpoints, live streams and the admin.
ROBOTS = """User-agent: *
Disallow: /accounts/
Disallow: /admin/
Disallow: /my/
Disallow: /song/*/vote/
Disallow: /song/*/votes/
Disallow: /song/*/stream/
Disallow: /song/*/progress/
"""

site_file = cache_control(public=True, max_age=86400)


@site_file
@require_safe
def robots_txt(request: HttpRequest) -> HttpResponse:
    return HttpResponse(ROBOTS, content_type="text/plain; charset=utf-8")


@site_file
@require_safe
def favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponsePermanentRedirect(static("billionsongs/favicon.svg"))
