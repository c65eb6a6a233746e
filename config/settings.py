"""Django settings for Outbound, read from the environment.

Every deployment knob is an environment variable so the same code runs a
first try on SQLite and a production cluster on PostgreSQL.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("OUTBOUND_VAR_DIR", BASE_DIR / "var"))
# The embedded database and the mail catcher live here; a fresh checkout has
# no such folder yet.
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


DEBUG = _bool("OUTBOUND_DEBUG", False)
# The key written here is public (it is in the repository): with DEBUG off the
# system checks refuse to start on it (outbound/checks.py), and secrets are
# never encrypted with a key derived from it (outbound/secrets.py).
OUTBOUND_DEFAULT_SECRET_KEY = "dev-only-insecure-key-change-me"  # noqa: S105
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip() or OUTBOUND_DEFAULT_SECRET_KEY
ALLOWED_HOSTS = [
    h.strip() for h in os.environ.get("OUTBOUND_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
]
CSRF_TRUSTED_ORIGINS = [
    o.strip() for o in os.environ.get("OUTBOUND_CSRF_TRUSTED_ORIGINS", "").split(",") if o.strip()
]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Serves the API docs page's Swagger UI files itself: no CDN needed.
    "ninja",
    # Login throttle: failed logins per user name and per address, with a cool-off.
    "axes",
    "outbound",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # Static files without a separate web server, with DEBUG off too (`outbound serve`).
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Content-Security-Policy on every answer (CONTENT_SECURITY_POLICY below).
    "csp.middleware.CSPMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A lock wait past its timeout is 503 with Retry-After, not 500.
    "outbound.busy.DatabaseBusyMiddleware",
    # Last, as django-axes asks: it answers a locked-out login with its page.
    "axes.middleware.AxesMiddleware",
]

AUTHENTICATION_BACKENDS = [
    # Refuses a login while its user name or address is locked out, before
    # the password is even checked (which costs CPU on purpose).
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Locked out after this many failed logins for one user name, or from one
# address, for the cool-off; a success resets the count.
AXES_FAILURE_LIMIT = int(os.environ.get("OUTBOUND_LOGIN_FAILURE_LIMIT", "5"))
AXES_COOLOFF_TIME = timedelta(minutes=float(os.environ.get("OUTBOUND_LOGIN_COOLOFF_MINUTES", "15")))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "outbound/login_locked.html"
# The address is REMOTE_ADDR only: behind a proxy `outbound serve` puts the
# client's address there from OUTBOUND_TRUSTED_PROXY's X-Forwarded-For, and
# no header a client sends can choose another address to be counted under.
AXES_CLIENT_IP_CALLABLE = "outbound.web.logins.client_address"

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

_default_db = f"sqlite:///{VAR_DIR / 'outbound.sqlite3'}"
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", _default_db), conn_max_age=60, conn_health_checks=True
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets the web app read while the worker writes; IMMEDIATE takes the
    # write lock at BEGIN so two writers queue instead of failing mid-way.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
        "init_command": (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;"
        ),
    }
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test-outbound.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = os.environ.get("OUTBOUND_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
# `collectstatic` is optional: WhiteNoise also serves straight from the apps'
# static folders. The folder must exist or WhiteNoise warns at every start.
STATIC_ROOT.mkdir(exist_ok=True)
WHITENOISE_USE_FINDERS = True

# Behind a proxy that ends TLS (OUTBOUND_HTTPS=1): cookies only over HTTPS,
# HSTS, http:// redirected, and the proxy's X-Forwarded-Proto trusted. Only
# set it when the proxy overwrites that header on every request it forwards.
OUTBOUND_HTTPS = _bool("OUTBOUND_HTTPS", False)
# The proxy whose X-Forwarded-Proto and -For `outbound serve` believes.
OUTBOUND_TRUSTED_PROXY = os.environ.get("OUTBOUND_TRUSTED_PROXY", "127.0.0.1")
if OUTBOUND_HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_HSTS_SECONDS = int(os.environ.get("OUTBOUND_HSTS_SECONDS", "31536000"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _bool("OUTBOUND_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = _bool("OUTBOUND_HSTS_PRELOAD", True)
    # Probes and scrapers on the host itself speak plain http to the app.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^livez$", r"^readyz$", r"^metrics$"]
SESSION_COOKIE_HTTPONLY = True

# No inline script or style anywhere: the console's behaviour is in static
# files. A message's HTML is shown from its own URL with a stricter policy
# (outbound/web/preview.py). Frames: only our own pages frame that preview.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'"],
        "style-src": ["'self'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'"],
        "connect-src": ["'self'"],
        "frame-src": ["'self'"],
        "frame-ancestors": ["'self'"],
        "form-action": ["'self'"],
        "base-uri": ["'none'"],
        "object-src": ["'none'"],
    }
}

# The debug page (OUTBOUND_DEBUG=1) hides the passwords in URL settings such
# as OUTBOUND_SYSTEM_MAIL_URL and DATABASE_URL, besides Django's own list.
DEFAULT_EXCEPTION_REPORTER_FILTER = "outbound.web.debug.ReporterFilter"

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "/"

# Django's own send_mail() lands in the outbox.
EMAIL_BACKEND = os.environ.get("OUTBOUND_EMAIL_BACKEND", "outbound.mail.EmailBackend")
# Django's default senders (send_mail(from_email=None), mail_admins). Empty:
# such mail leaves from Outbound's default sender (the default email
# backend's from address, else the global settings' Default from address),
# instead of Django's undeliverable webmaster@localhost and root@localhost.
DEFAULT_FROM_EMAIL = os.environ.get("OUTBOUND_DJANGO_FROM_EMAIL", "")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# The deployment's system mail: used for alerts, never the notification
# backends themselves (an alert about a failing backend must not go through it).
OUTBOUND_SYSTEM_MAIL_URL = os.environ.get("OUTBOUND_SYSTEM_MAIL_URL", "")

# Worker tuning (seconds, messages per claim).
OUTBOUND_BATCH_SIZE = int(os.environ.get("OUTBOUND_BATCH_SIZE", "100"))
OUTBOUND_LEASE_SECONDS = float(os.environ.get("OUTBOUND_LEASE_SECONDS", "120"))
OUTBOUND_POLL_INTERVAL = float(os.environ.get("OUTBOUND_POLL_INTERVAL", "0.5"))
OUTBOUND_HEARTBEAT_INTERVAL = float(os.environ.get("OUTBOUND_HEARTBEAT_INTERVAL", "10"))
# How often `outbound serve` runs the alert checks (no worker, stuck messages).
OUTBOUND_ALERT_CHECK_INTERVAL = float(os.environ.get("OUTBOUND_ALERT_CHECK_INTERVAL", "60"))
# An extra CA bundle trusted for backend TLS (a private relay's CA).
OUTBOUND_SMTP_CAFILE = os.environ.get("OUTBOUND_SMTP_CAFILE", "")
OUTBOUND_MESSAGE_ID_DOMAIN = os.environ.get("OUTBOUND_MESSAGE_ID_DOMAIN", "")
OUTBOUND_FORBID_PRIVATE_HOSTS = _bool("OUTBOUND_FORBID_PRIVATE_HOSTS", False)
# SMS provider URLs must be https; plain http on a loopback address (a
# provider simulator on this host) only with DEBUG or this switch.
OUTBOUND_ALLOW_LOOPBACK_HTTP = _bool("OUTBOUND_ALLOW_LOOPBACK_HTTP", False)
# The address providers reach this service at (https://outbound.example.com);
# SMS delivery receipts are asked for only when it is set.
OUTBOUND_PUBLIC_URL = os.environ.get("OUTBOUND_PUBLIC_URL", "")

# Fernet keys (comma separated, newest first) that encrypt stored secrets.
OUTBOUND_SECRET_KEYS = os.environ.get("OUTBOUND_SECRET_KEYS", "")
# The bearer token /metrics asks of a scrape from another host (loopback
# needs none); empty: only loopback is answered.
OUTBOUND_METRICS_TOKEN = os.environ.get("OUTBOUND_METRICS_TOKEN", "")

# Logs go to stderr, one line each: Outbound's own lines, Django's request
# errors (500 tracebacks, which Django's defaults only mail to ADMINS when
# DEBUG is off) and its security logger (django.security.*: bad Host
# headers, CSRF refusals). OUTBOUND_LOG_FORMAT=json writes one JSON object a
# line (python-json-logger), with the message_id, backend_id, worker and
# claim_token of the delivery a line is about (outbound/logcontext.py).
OUTBOUND_LOG_FORMAT = os.environ.get("OUTBOUND_LOG_FORMAT", "plain").strip().lower() or "plain"
if OUTBOUND_LOG_FORMAT not in {"plain", "json"}:
    raise ImproperlyConfigured(
        f"OUTBOUND_LOG_FORMAT must be plain or json, not {OUTBOUND_LOG_FORMAT!r}."
    )
_LOG_LEVEL = os.environ.get("OUTBOUND_LOG_LEVEL", "INFO").strip().upper()
if _LOG_LEVEL not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
    raise ImproperlyConfigured(
        f"OUTBOUND_LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not {_LOG_LEVEL!r}."
    )
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "outbound.logcontext.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": OUTBOUND_LOG_FORMAT,
            "filters": ["context"],
        },
    },
    "loggers": {
        "outbound": {"handlers": ["stderr"], "level": _LOG_LEVEL},
        # Replaces Django's default handlers for it (the console only with
        # DEBUG on, mail to the empty ADMINS with it off). 4xx answers are
        # warnings of django.request: only its errors (5xx) are written.
        "django": {"handlers": ["stderr"], "level": "INFO"},
        "django.request": {"level": "ERROR"},
        "django.security": {"level": "WARNING"},
    },
}
