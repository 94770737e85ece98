"""The only modules that talk to AWS: the Batch client and its Protocol, per-job targets
(profiles, regions, the allow-list), AWS call counting, CloudWatch Logs, the events queue's
SQS client and setup, and the typed job detail and state-change event (untrusted input).

May import ``poller.models`` and ``poller.errors`` only (import-linter's contracts in
pyproject.toml).
"""
