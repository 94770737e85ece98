"""What runs inside a Celery worker around poller's tasks: start-up checks and bootsteps, the
events process and its consumer, the reconciler and its safety net, the heartbeat, the
messages poller sends itself (resend), and the consumer that outlives a broker restart.

Thin sources: each turns what it sees into calls of ``poller.core``. May import
``poller.monitoring``, ``poller.core`` and everything below them; never ``poller.app``,
``poller.tasks`` or the CLI (import-linter's contracts in pyproject.toml).
"""
