"""Environment values and secrets are masked in every view of a spec; names stay."""

from __future__ import annotations

from poller.core.redaction import MASK, kwargs_repr, redacted

SPEC = {
    "job_name": "j",
    "parameters": {"day": "2026-12-04"},
    "container_overrides": {
        "command": ["run"],
        "environment": [{"name": "TOKEN", "value": "s1"}, {"name": "EMPTY"}],
    },
    "node_overrides": {
        "nodePropertyOverrides": [
            {
                "targetNodes": "0:",
                "containerOverrides": {"environment": [{"name": "N", "value": "s2"}]},
            }
        ]
    },
    "eks_properties_override": {
        "podProperties": {"containers": [{"env": [{"name": "E", "value": "s3"}]}]}
    },
    "ecs_properties_override": {
        "taskProperties": [{"containers": [{"environment": [{"name": "C", "value": "s4"}]}]}]
    },
    "secrets": [{"name": "DB", "valueFrom": "arn:aws:secretsmanager:us-east-1:1:secret:db"}],
}


def test_every_environment_value_and_secret_is_masked_and_nothing_else() -> None:
    # Given a spec with environment values in every override AWS has, and a secret
    shown = redacted(SPEC)
    text = repr(shown)
    # Then none of the values shows, their names do, and other members are kept
    for secret in ("s1", "s2", "s3", "s4", "secretsmanager"):
        assert secret not in text
    for name in ("TOKEN", "EMPTY", "'N'", "'E'", "'C'", "DB"):
        assert name in text
    assert shown["container_overrides"]["environment"][0] == {"name": "TOKEN", "value": MASK}
    assert shown["container_overrides"]["command"] == ["run"]
    assert shown["parameters"] == SPEC["parameters"]
    # And the spec itself is untouched (a re-sent submission needs the real values)
    assert SPEC["container_overrides"]["environment"][0]["value"] == "s1"


def test_the_task_arguments_repr_masks_values() -> None:
    text = kwargs_repr({"container_overrides": SPEC["container_overrides"]})
    assert "s1" not in text
    assert "TOKEN" in text
