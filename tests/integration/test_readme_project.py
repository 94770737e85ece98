"""The manual's "Adding poller to an existing Celery project", run as written.

The section moved from the README to docs/using/celery-project.md (the module keeps its name). Its
files become a project in a temporary directory, its commands start the two workers, and its
snippet runs a chain; only the Redis address, the Batch queue and definition are swapped for the
local ones (and the AWS variables point boto3 at the local Batch endpoint).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from poller.testing.processes import stop_process
from poller.testing.redis_server import EmbeddedRedis
from tests.conftest import eventually

pytestmark = pytest.mark.integration

PAGE = Path(__file__).parent.parent.parent / "docs" / "using" / "celery-project.md"
SECTION = "## Adding poller to an existing Celery project"
BIN = Path(sys.executable).parent


def section_blocks() -> list[tuple[str, str]]:
    """The (language, code) blocks of the page's section, up to its first subsection."""
    text = PAGE.read_text()
    start = text.index(SECTION)
    end = min(
        found
        for mark in ("\n## ", "\n### ")
        if (found := text.find(mark, start + len(SECTION))) > 0
    )
    return re.findall(r"```(\w+)\n(.*?)```", text[start:end], flags=re.DOTALL)


def localized(code: str, redis_base: str) -> str:
    code = code.replace("redis://127.0.0.1:6379", redis_base)
    return code.replace("my-queue", JOB_QUEUE).replace("my-definition", SLEEP_JOB_DEFINITION)


@pytest.fixture
def readme_project(
    tmp_path: Path, poller_batch: LocalBatch
) -> Iterator[tuple[Path, dict[str, str]]]:
    with EmbeddedRedis() as server:
        base = server.url.rsplit("/", 1)[0]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("POLLER_", "AWS_"))}
        env |= poller_batch.environ()
        env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
        yield tmp_path, env | {"REDIS_BASE": base}


def test_the_readme_project_runs_a_chain_through_both_workers(
    readme_project: tuple[Path, dict[str, str]],
) -> None:
    project, env = readme_project
    base = env.pop("REDIS_BASE")
    blocks = section_blocks()
    # Given the section's files written out as the project
    files = [code for lang, code in blocks if lang == "python" and code.startswith("# shop/")]
    assert len(files) == 3
    for code in files:
        path = project / code.splitlines()[0].removeprefix("# ")
        path.parent.mkdir(exist_ok=True)
        path.write_text(localized(code, base))
    (project / "shop" / "__init__.py").touch()
    # And its commands: exports set the environment, the other lines start the workers
    (commands,) = [code for lang, code in blocks if lang == "sh"]
    workers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for line in localized(commands, base).splitlines():
            words = shlex.split(line)
            if words[0] == "export":
                name, _, value = words[1].partition("=")
                env[name] = value
                continue
            assignments = [w for w in words if re.match(r"^[A-Z_]+=", w)]
            argv = words[len(assignments) :]
            log = project / f"{argv[2]}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    argv, cwd=project, stdout=out, stderr=subprocess.STDOUT,
                    env={**env, **dict(a.split("=", 1) for a in assignments)},
                )  # fmt: skip
            workers.append((process, log))
        assert [log.name for _, log in workers] == ["shop.log", "poller.log"]
        for process, log in workers:
            eventually(
                lambda p=process, f=log: (
                    (p.poll() is None or pytest.fail(f.read_text())) and "ready." in f.read_text()
                ),
                timeout=60,
                interval=0.3,
            )
        # When the section's snippet runs in the project
        (snippet,) = [c for lang, c in blocks if lang == "python" and not c.startswith("# shop/")]
        ran = subprocess.run(
            [sys.executable, "-c", localized(snippet, base)],
            cwd=project, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        # Then the chain's last step, the project's task, returned the job's tracking id
        assert ran.returncode == 0, ran.stderr + workers[1][1].read_text()[-3000:]
        assert re.fullmatch(r"[0-9a-f-]{36}\n", ran.stdout), ran.stdout
        shop_log, poller_log = (log.read_text() for _, log in workers)
        assert "loading the output of Batch job" in shop_log
        assert "unregistered" not in shop_log + poller_log
        # And a failing job reaches the project's receiver, loaded by POLLER_IMPORTS
        failing = (
            "from poller import submit_job, JobHandle; "
            f"r = submit_job.delay('fails', '{JOB_QUEUE}', '{SLEEP_JOB_DEFINITION}', "
            "parameters={'exit_code': '3'}); print(JobHandle(r.id).wait(timeout=60)['status'])"
        )
        failed = subprocess.run(
            [sys.executable, "-c", failing], cwd=project, env=env,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert failed.stdout.strip() == "FAILED", failed.stderr
        eventually(lambda: "ALERT: Batch job" in workers[1][1].read_text(), timeout=10)
    finally:
        for process, _ in workers:
            stop_process(process, timeout=20)
