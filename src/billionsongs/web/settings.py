"""Django settings, all driven by environment variables so one package serves every deployment.

BILLIONSONGS_HOME   data folder: SQLite database, file cache, generated secret key (default: user data dir)
DATABASE_URL        e.g. postgres://user:pass@host/db; unset = SQLite in BILLIONSONGS_HOME
SECRET_KEY          unset = a random key generated once and stored in BILLIONSONGS_HOME
DEBUG               "1"/"true" to enable; off by default (this is a production configuration)
ALLOWED_HOSTS       comma-separated; default localhost names only
CSRF_TRUSTED_ORIGINS comma-separated origins (https://example.org) when behind a proxy on another origin
BILLIONSONGS_HTTPS  "1" when served over HTTPS: secure cookies, HSTS, trust X-Forwarded-Proto
EMAIL_BACKEND       default: the console backend (password-reset mails are printed)
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
STATIC_ROOT = os.environ.get("STATIC_ROOT") or None  # only for `collectstatic` (e.g. to upload to a CDN)
# Serve straight from the static folders (site-wide and the apps'): no collectstatic step before `serve`.
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
# Share of random picks that are brand-new IDs rather than songs already written (0 … 1).
FRESH_SONG_SHARE = float(os.environ.get("BILLIONSONGS_FRESH_SHARE", 0.5))
WORKER_BATCH_SIZE = int(os.environ.get("BILLIONSONGS_BATCH_SIZE", 16))
WORKER_POLL_SECONDS = float(os.environ.get("BILLIONSONGS_POLL_SECONDS", 0.5))
# A "generating" row older than this is taken to belong to a dead worker and is queued again.
WORKER_STALE_SECONDS = int(os.environ.get("BILLIONSONGS_STALE_SECONDS", 1800))
WORKER_MAX_ATTEMPTS = int(os.environ.get("BILLIONSONGS_MAX_ATTEMPTS", 3))

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
