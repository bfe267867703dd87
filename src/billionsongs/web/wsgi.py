"""WSGI entry point, served by granian (`billionsongs serve`) or any other WSGI server."""

import gc
import os

from django.core.wsgi import get_wsgi_application

from billionsongs.music.syllables import load_dictionary

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billionsongs.web.settings")

application = get_wsgi_application()

# A server process loads, before its first request, what a song page would otherwise load on the first
# visitor's time: the syllable dictionary of the karaoke markup (0.2-0.5 s on this project's 2-vCPU
# machine). `billionsongs serve` imports this module before granian forks, so that happens once.
load_dictionary()

# Everything loaded so far lives as long as the process. Left to the cyclic collector, every full
# collection walks all of it while a request waits: when the serve process still imported torch and
# transformers (470k objects), those were 160-250 ms pauses, the p99 of whole wrk runs
# (benchmarks/RESULTS.md, web serving). Frozen objects are never scanned, and forked server processes
# keep sharing those pages instead of copying them as the collector touches them.
gc.freeze()
