"""The job protocol as plain functions: admit, submit, check, cancel, give up; the tracking
decisions every observation goes through, coalesced checks, backoff, revocation, the signals'
outbox, what is never shown (redaction), and the runtime that ties settings, store and Batch.

May import: ``poller.aws``, ``poller.store``, ``poller.signals``, ``poller.settings``,
``poller.models``, ``poller.errors``. Never Celery, the worker, monitoring or the CLI (the
import-linter contracts in pyproject.toml say so, and ``make test`` checks them).
"""
