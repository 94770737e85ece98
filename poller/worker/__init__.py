"""What runs inside a Celery worker around poller's tasks: start-up checks (``startup``) and
bootsteps (``thread_step``), AWS Batch's events (``batch_events``, run in the process of
``batch_events_process``), the reconciler and its safety net, the heartbeat, the messages poller
sends itself (``resend``), and Celery's broker consumer and Redis transport made to outlive a
lost connection or a malformed message (``broker_consumer``, ``broker_transport``).

Thin sources: each turns what it sees into calls of ``poller.core``. May import
``poller.monitoring``, ``poller.core`` and everything below them; never ``poller.app``,
``poller.tasks`` or the CLI (import-linter's contracts in pyproject.toml).
"""
