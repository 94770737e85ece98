"""A Django project laid out as Celery's examples/django: the Celery app loads with Django."""

from mysite.celery import app as celery_app

__all__ = ["celery_app"]
