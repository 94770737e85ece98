"""Flower configuration for poller: `celery -A poller flower --conf=config/flowerconfig.py`.

Settings come from the environment (Flower's own FLOWER_* names). Flower bound beyond localhost
without authentication is refused at start-up. Options given on Flower's command line are
applied after this file and are not checked here: prefer the environment variables.
"""

import os
import sys

from poller.flower import exposure_error

address = os.environ.get("FLOWER_ADDRESS", "127.0.0.1")
port = int(os.environ.get("FLOWER_PORT", "5555"))
_basic_auth = os.environ.get("FLOWER_BASIC_AUTH")
basic_auth = [_basic_auth] if _basic_auth else []
auth = os.environ.get("FLOWER_AUTH", "")
url_prefix = os.environ.get("FLOWER_URL_PREFIX", "")
# Keep the task list bounded: every check of every job is a task Flower remembers.
max_tasks = int(os.environ.get("FLOWER_MAX_TASKS", "10000"))
# The broker's own API is not needed for Redis; task events come from the workers (-E).
purge_offline_workers = 600

_error = exposure_error(address, _basic_auth, auth)
if _error:
    sys.exit(f"flowerconfig: {_error}")
