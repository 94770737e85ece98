"""What operators watch: the fleet's metrics for Prometheus (and the events queues' dead
letters), Flower's glue and task names, and how the CLI and the demo render jobs.

May import ``poller.core`` and everything below it; never the worker, the tasks or the CLI
(import-linter's contracts in pyproject.toml).
"""
