"""An existing Celery project, as poller's users have one: its own app, tasks and receivers.

It knows nothing of poller's routing: its settings are Celery's defaults (queue ``celery``) plus
its broker, the same as poller's (``SHOP_BROKER_URL``: Redis, or RabbitMQ), and a Redis where it
notes what ran (``SHOP_NOTES_URL``).
"""
