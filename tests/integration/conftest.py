from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def poller_worker_includes() -> list[str]:
    """The test worker records every signal (and hosts the canvas test tasks)."""
    return ["tests.integration.signal_recorder"]
