"""poller in a Django project, in a fresh interpreter each (Django's settings are process-wide):
settings.py as a source of settings, and ``delay_on_commit``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SETTINGS = """
SECRET_KEY = "test-only"
INSTALLED_APPS = []
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
POLLER_QUEUE = "from-settings-py"
POLLER_IMPORTS = ["shop.receivers"]
POLLER_POLL_MAX_DELAY = 20
"""


def run_in_project(tmp_path: Path, code: str, **env: str) -> dict[str, object]:
    """Run ``code`` from the project's directory with DJANGO_SETTINGS_MODULE set; its JSON."""
    (tmp_path / "site_settings.py").write_text(SETTINGS)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("POLLER_", "DJANGO_"))}
    ran = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={**clean, "DJANGO_SETTINGS_MODULE": "site_settings", **env},
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    answer: dict[str, object] = json.loads(ran.stdout.splitlines()[-1])
    return answer


READ_SETTINGS = """
import json
from poller.settings import Settings
s = Settings()
print(json.dumps({"queue": s.queue, "imports": s.imports, "max": s.poll_max_delay}))
"""


def test_settings_py_is_a_source_of_poller_settings(tmp_path: Path) -> None:
    assert run_in_project(tmp_path, READ_SETTINGS) == {
        "queue": "from-settings-py", "imports": ["shop.receivers"], "max": 20.0,
    }  # fmt: skip


def test_environment_variables_win_over_settings_py(tmp_path: Path) -> None:
    answer = run_in_project(tmp_path, READ_SETTINGS, POLLER_QUEUE="from-env")
    assert answer["queue"] == "from-env" and answer["max"] == 20.0


ON_COMMIT = """
import json
import django
django.setup()
from django.db import transaction
from poller import InvalidJobSpec, submit_job
from poller.tasks import SubmitJobTask
sent = []
SubmitJobTask._admit_and_send = lambda self, admitted, args, kwargs, options: sent.append(args)
with transaction.atomic():
    submit_job.delay_on_commit("committed", "q", "d")
    inside = len(sent)
try:
    with transaction.atomic():
        submit_job.delay_on_commit("rolled-back", "q", "d")
        raise RuntimeError("roll back")
except RuntimeError:
    pass
try:
    with transaction.atomic():
        submit_job.delay_on_commit("no-definition", "q")
    refused = None
except InvalidJobSpec as err:
    refused = err.field
print(json.dumps({"inside": inside, "sent": len(sent), "refused": refused}))
"""


@pytest.mark.usefixtures("poller_redis_client")
def test_delay_on_commit_sends_after_commit_and_never_after_rollback(tmp_path: Path) -> None:
    # Given a submission in a committed transaction, one in a rolled-back one, and a bad spec
    answer = run_in_project(tmp_path, ON_COMMIT)
    # Then only the committed one was sent, once the transaction committed; the bad spec was
    # refused at once, naming the field
    assert answer == {"inside": 0, "sent": 1, "refused": "job_definition"}
