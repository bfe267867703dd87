"""The production site plus one bare `cache_page` view: the yardstick benchmarks/web.py measures against."""
