"""Django settings, all driven by environment variables so one package serves every deployment.

BILLIONSONGS_HOME   data folder: SQLite database, file cache, generated secret key (default: user data dir)
DATABASE_URL        e.g. postgres://user:pass@host/db; unset = SQLite in BILLIONSONGS_HOME
SECRET_KEY          unset = a random key generated once and stored in BILLIONSONGS_HOME
DEBUG               "1"/"true" to enable; off by default (this is a production configuration)
ALLOWED_HOSTS       comma-separated; default localhost names only
CSRF_TRUSTED_ORIGINS comma-separated origins (https://example.org) when behind a proxy on another origin
BILLIONSONGS_HTTPS  "1" when served over HTTPS: secure cookies, HSTS, trust X-Forwarded-Proto
EMAIL_BACKEND       default: the console backend (password-reset mails are printed)
BILLIONSONGS_QUEUE  "db" (default: workers poll the database) or "rq" (scale-out: RQ on REDIS_URL)
REDIS_URL           Redis for the RQ queue, the pool and live text (default redis://127.0.0.1:6379/0)
BILLIONSONGS_MODEL  the workers' model folder or hub name (default: the bundled model)
BILLIONSONGS_DTYPE  auto (default: bf16 where the hardware has it), float32 or bfloat16; set it on mixed fleets
BILLIONSONGS_POOL_TARGET, _POOL_MAX_SHOWS, _PICK_WEIGHTS ...  see "Generation service" below
"""

import os

import dj_database_url

from billionsongs.web.home import billionsongs_home, stored_secret_key


def _flag(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


HOME = billionsongs_home()

DEBUG = _flag("DEBUG")
SECRET_KEY = os.environ.get("SECRET_KEY") or stored_secret_key(HOME)
ALLOWED_HOSTS = _list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")
CSRF_TRUSTED_ORIGINS = _list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    # Our apps first, so their templates (accounts' registration/*) win over the admin's.
    "billionsongs.web.songs",
    "billionsongs.web.votes",
    "billionsongs.web.accounts",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.http.ConditionalGetMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "billionsongs.web.urls"
WSGI_APPLICATION = "billionsongs.web.wsgi.application"

_WEB_DIR = os.path.dirname(os.path.abspath(__file__))
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [os.path.join(_WEB_DIR, "templates")],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": dj_database_url.config(conn_max_age=600, conn_health_checks=True)}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(HOME / "db.sqlite3"),
            # Keep each request thread's connection: opening one (and its PRAGMAs) per request cost
            # ~40% of the requests/s of database-backed pages in the measurements.
            "CONN_MAX_AGE": 600,
            "OPTIONS": {
                # IMMEDIATE: a transaction takes the write lock when it starts, so two writers queue
                # (up to `timeout`) instead of one failing with "database is locked" mid-transaction.
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                # WAL: the worker process writes songs while the web process keeps reading.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(HOME / "cache"),
        "TIMEOUT": 300,
    }
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "account"
LOGOUT_REDIRECT_URL = "login"

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "Billion Songs <noreply@localhost>")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# The site's own assets, and the karaoke player of billionsongs.music (a library, not a Django app).
STATICFILES_DIRS = [os.path.join(_WEB_DIR, "static"), os.path.join(os.path.dirname(_WEB_DIR), "music", "static")]
# `serve` collects static files here and granian serves them without entering Python (server.py).
STATIC_ROOT = os.environ.get("STATIC_ROOT") or str(HOME / "static")
os.makedirs(STATIC_ROOT, exist_ok=True)  # WhiteNoise warns on every start when it is missing
STATIC_CACHE_SECONDS = int(os.environ.get("BILLIONSONGS_STATIC_CACHE_SECONDS", 3600))
# WhiteNoise serves straight from the static folders for any other server (no collectstatic needed).
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG

# The vote widget is an iframe on our own pages; other sites may not frame us.
X_FRAME_OPTIONS = "SAMEORIGIN"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
if _flag("BILLIONSONGS_HTTPS"):
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = 3600

# Site behaviour (read by the songs and votes apps).
SONG_CACHE_SECONDS = int(os.environ.get("BILLIONSONGS_SONG_CACHE_SECONDS", 86400))
TOP_CACHE_SECONDS = int(os.environ.get("BILLIONSONGS_TOP_CACHE_SECONDS", 300))
WRITING_REFRESH_SECONDS = int(os.environ.get("BILLIONSONGS_REFRESH_SECONDS", 3))
WORKER_BATCH_SIZE = int(os.environ.get("BILLIONSONGS_BATCH_SIZE", 16))
WORKER_POLL_SECONDS = float(os.environ.get("BILLIONSONGS_POLL_SECONDS", 0.5))
# Lease on claimed songs: a worker renews it (heartbeat) while it writes; a "generating" row whose lease
# is older than this belongs to a dead worker and is queued again by any other worker.
WORKER_STALE_SECONDS = float(os.environ.get("BILLIONSONGS_STALE_SECONDS", 90))
WORKER_MAX_ATTEMPTS = int(os.environ.get("BILLIONSONGS_MAX_ATTEMPTS", 3))
# Idle workers look after the queue this often: re-queue expired leases, refill the pool, and (RQ mode)
# pick up pending songs whose Redis message was lost.
WORKER_TICK_SECONDS = float(os.environ.get("BILLIONSONGS_TICK_SECONDS", 5))
# How long one running batch keeps taking newly requested songs into its free rows before it drains
# (then the worker's loop, and in RQ mode the next job, starts another). Keep it well under the job timeout.
WORKER_RUN_SECONDS = float(os.environ.get("BILLIONSONGS_RUN_SECONDS", 300))
# Longest a single RQ job (one batch) may run before RQ stops it and its songs are returned.
WORKER_JOB_TIMEOUT = int(os.environ.get("BILLIONSONGS_JOB_TIMEOUT", 3600))
# Optional "module:callable" building the generator from a model name (tests use a slowed-down one).
WORKER_GENERATOR = os.environ.get("BILLIONSONGS_GENERATOR", "")

# Generation service (issue 5). Embedded default: the queue is the database, polled by the worker
# child of `serve`, and the pool lives in the database. Scale-out: BILLIONSONGS_QUEUE=rq + REDIS_URL:
# the web enqueues RQ jobs that wake `billionsongs worker` processes, the pool and live text go through
# Redis. Either way the Song table stays the source of truth for every song's state.
QUEUE_BACKEND = os.environ.get("BILLIONSONGS_QUEUE", "db").strip().lower()
if QUEUE_BACKEND not in ("db", "rq"):
    raise ValueError(f"BILLIONSONGS_QUEUE must be 'db' or 'rq', not {QUEUE_BACKEND!r}")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
REDIS_PREFIX = os.environ.get("BILLIONSONGS_REDIS_PREFIX", "billionsongs")
RQ_QUEUE_NAME = os.environ.get("BILLIONSONGS_RQ_QUEUE", REDIS_PREFIX)
POOL_BACKEND = os.environ.get("BILLIONSONGS_POOL", "redis" if QUEUE_BACKEND == "rq" else "db").strip().lower()
if POOL_BACKEND not in ("db", "redis"):
    raise ValueError(f"BILLIONSONGS_POOL must be 'db' or 'redis', not {POOL_BACKEND!r}")
POOL_TARGET = int(os.environ.get("BILLIONSONGS_POOL_TARGET", 50_000))
POOL_MAX_SHOWS = int(os.environ.get("BILLIONSONGS_POOL_MAX_SHOWS", 10))
POOL_START_SHARE = float(os.environ.get("BILLIONSONGS_POOL_START_SHARE", 0.75))
# Relative weights of where "/" takes a song from: the pool, the top-voted songs (weighted by score),
# and brand-new IDs. An empty source falls through to the others, then to any written song.
PICK_WEIGHTS = {name: float(weight) for name, _, weight in (
    item.partition("=") for item in _list("BILLIONSONGS_PICK_WEIGHTS", "pool=3,top=1,fresh=0"))}
TOP_PICK_SIZE = int(os.environ.get("BILLIONSONGS_TOP_PICK_SIZE", 200))
# Quality gate for the pool (billionsongs.web.songs.quality).
QUALITY_MIN_LINES = int(os.environ.get("BILLIONSONGS_QUALITY_MIN_LINES", 4))
QUALITY_MAX_LINES = int(os.environ.get("BILLIONSONGS_QUALITY_MAX_LINES", 120))
QUALITY_MIN_CHARS = int(os.environ.get("BILLIONSONGS_QUALITY_MIN_CHARS", 80))
QUALITY_MAX_CHARS = int(os.environ.get("BILLIONSONGS_QUALITY_MAX_CHARS", 6000))
QUALITY_MIN_DISTINCT_WORDS = float(os.environ.get("BILLIONSONGS_QUALITY_MIN_DISTINCT_WORDS", 0.25))
# Live writing: the worker publishes a song's text at most this often; a stream (SSE) response lasts
# at most STREAM_SECONDS (the browser reconnects) and at most STREAM_SLOTS run at once per web process,
# so streams can never take every request thread. STREAM_RETRY_SECONDS is how long the browser waits to
# reconnect: the live text stands still that long at every reconnect (3 s every 20 s was noticeable).
PROGRESS_SECONDS = float(os.environ.get("BILLIONSONGS_PROGRESS_SECONDS", 0.5))
STREAM_SECONDS = float(os.environ.get("BILLIONSONGS_STREAM_SECONDS", 20))
STREAM_RETRY_SECONDS = max(0.25, float(os.environ.get("BILLIONSONGS_STREAM_RETRY_SECONDS", 0.5)))  # no tight loop
STREAM_SLOTS = int(os.environ.get("BILLIONSONGS_STREAM_SLOTS", 4))
# A page that found no free stream slot asks for the song's progress this often instead (a short request).
STREAM_POLL_SECONDS = max(0.25, float(os.environ.get("BILLIONSONGS_STREAM_POLL_SECONDS", 1)))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "billionsongs": {"handlers": ["console"], "level": os.environ.get("BILLIONSONGS_LOG_LEVEL", "INFO")},
        "django": {"handlers": ["console"], "level": "WARNING"},
    },
}
