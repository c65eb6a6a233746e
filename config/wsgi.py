"""The WSGI application for `outbound serve` or any WSGI server."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_wsgi_application()

# Any WSGI server (gunicorn, uwsgi, `outbound serve`) refuses to serve on the
# public development key with DEBUG off; WSGI servers run no system checks.
from outbound.checks import refuse_unsafe_keys  # noqa: E402

refuse_unsafe_keys()
