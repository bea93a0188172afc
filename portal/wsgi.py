"""WSGI entry point for gunicorn: `gunicorn portal.wsgi`."""

import gc
import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
application = get_wsgi_application()
# Leave what loading the portal made (Django, every module, the settings and middleware: about 140,000 objects) out
# of the cycle collector's full passes. Each full pass otherwise walks that whole heap with every thread of the
# process stopped, on whichever request sets it off: 70-95 ms in bench/pages_dashboard.py, 7-16 ms once frozen. The
# workers do the same (batchsync/celery.py).
gc.freeze()
