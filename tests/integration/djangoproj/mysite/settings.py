"""The project's settings: Celery's under CELERY_*, poller's under POLLER_*, nothing in the
environment but where the test's servers are (SITE_REDIS_URL, SITE_DATABASE)."""

import os

SECRET_KEY = "test-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["orders"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["SITE_DATABASE"]}
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

CELERY_BROKER_URL = os.environ["SITE_REDIS_URL"]
CELERY_RESULT_BACKEND = os.environ["SITE_REDIS_URL"]
CELERY_TASK_ROUTES = {"poller.*": {"queue": "poller"}}

POLLER_BROKER_URL = CELERY_BROKER_URL
POLLER_IMPORTS = ["orders.receivers"]
POLLER_POLL_INITIAL_DELAY = 0.3
POLLER_POLL_MAX_DELAY = 1.0
