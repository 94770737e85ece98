"""docker-compose.yml, checked by Debian's `docker-compose config` (no engine runs here)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from poller.settings import Settings

ROOT = Path(__file__).parent.parent


def compose_config(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("docker-compose")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail(
                "docker-compose is not installed: make test installs Debian's docker-compose"
            )
        pytest.skip("docker-compose is not installed (apt-get install docker-compose)")
    return subprocess.run(
        [binary, *args, "config"], cwd=ROOT, capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=60,
    )  # fmt: skip


def parsed(*args: str) -> dict[str, Any]:
    result = compose_config(*args, env={"FLOWER_BASIC_AUTH": "admin:secret"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_compose_file_is_valid_with_the_expected_services() -> None:
    services = parsed("--profile", "local")["services"]
    assert set(services) == {"redis", "worker", "flower", "metrics", "local-batch"}
    # The local AWS Batch endpoint runs only with `--profile local`
    assert services["local-batch"]["profiles"] == ["local"]
    assert [
        p for name, s in services.items() if name != "local-batch" for p in s.get("profiles", [])
    ] == []


def test_redis_persists_to_a_volume() -> None:
    redis = parsed()["services"]["redis"]
    assert "--appendonly" in redis["command"]
    # docker-compose v1 prints volumes short ("redis-data:/data:rw"), v2 long
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in redis["volumes"]]
    assert any(m.startswith("redis-data:/data") for m in mounts)


def test_workers_can_be_scaled() -> None:
    worker = parsed()["services"]["worker"]
    # --scale worker=N needs no fixed container name and no host port
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker["command"][:4] == ["celery", "-A", "poller", "worker"]
    # and a worker that dies is started again by the engine
    assert worker["restart"] == "unless-stopped"


def test_flower_refuses_to_start_without_auth() -> None:
    result = compose_config(env={"FLOWER_BASIC_AUTH": ""})
    assert result.returncode != 0
    assert "FLOWER_BASIC_AUTH" in result.stderr


def test_the_env_file_names_only_known_settings() -> None:
    known = {f"POLLER_{name.upper()}" for name in Settings.model_fields}
    lines = (ROOT / "config" / "compose.env").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line.startswith("POLLER_")}
    assert names
    assert names <= known


def test_the_rabbitmq_override_points_every_poller_service_at_rabbitmq_and_redis() -> None:
    # Given the RabbitMQ override over the compose file
    files = ("-f", "docker-compose.yml", "-f", "config/compose-rabbitmq.yml")
    result = compose_config(*files, env={"FLOWER_BASIC_AUTH": "a:b", "RABBITMQ_PASSWORD": "pw"})
    assert result.returncode == 0, result.stderr
    services = yaml.safe_load(result.stdout)["services"]
    # Then RabbitMQ runs on a volume, with a user of its own (guest is refused remotely)
    rabbitmq = services["rabbitmq"]
    assert rabbitmq["environment"]["RABBITMQ_DEFAULT_USER"] == "poller"
    assert rabbitmq["hostname"] == "rabbitmq"  # its data directory is named after it
    assert any("/var/lib/rabbitmq" in str(volume) for volume in rabbitmq["volumes"])
    # And each of poller's services has a broker URL and a records URL that poller accepts
    for name in ("worker", "flower", "metrics"):
        env = services[name]["environment"]
        settings = Settings(broker_url=env["POLLER_BROKER_URL"], redis_url=env["POLLER_REDIS_URL"])
        assert settings.broker_is_rabbitmq, name
        assert "rabbitmq" in services[name]["depends_on"], name
    # And without a password it refuses to start, naming it
    refused = compose_config(*files, env={"FLOWER_BASIC_AUTH": "a:b", "RABBITMQ_PASSWORD": ""})
    assert refused.returncode != 0 and "RABBITMQ_PASSWORD" in refused.stderr
