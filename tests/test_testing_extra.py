"""The command line and poller.testing work in an install without pytest (no testing extra)."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_and_fake_batch_import_without_pytest() -> None:
    # Given an interpreter where pytest cannot be imported
    code = (
        "import sys; sys.modules['pytest'] = None\n"
        "from click.testing import CliRunner\n"
        "from poller.cli import main\n"
        "from poller.testing import FakeBatch\n"
        "result = CliRunner().invoke(main, ['--help'])\n"
        "assert result.exit_code == 0, result.output\n"
        "result = CliRunner().invoke(main, ['status', 'nope'])\n"
        "assert 'error:' in result.output and 'pytest' not in result.output, result.output\n"
        "print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # Then the command line answers (one error line for an unknown id) and FakeBatch imports
    assert out.stdout.strip() == "ok", out.stderr
