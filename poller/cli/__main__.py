"""``python -m poller.cli``: the ``poller`` command."""

from __future__ import annotations

from poller.cli import main

if __name__ == "__main__":  # pragma: no cover
    main()
