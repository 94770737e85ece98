"""Testing aids for poller and for apps that use it (the ``testing`` extra).

- :class:`FakeBatch`: AWS Batch in memory, for fast tests of code going through poller's
  lifecycle (``Runtime(settings, store, FakeBatch())``);
- :mod:`poller.testing.plugin`: the pytest plugin (registered by poller's entry point) with
  fixtures that start real servers;
- the dev stack behind ``poller redis`` and ``poller demo``.

Importing this package needs neither pytest nor the AWS Batch emulator.

Below the CLI only: it may import every other part of poller (import-linter's contracts).
"""

from poller.testing.fake_batch import FakeBatch

__all__ = ["FakeBatch"]
