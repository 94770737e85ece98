"""``python -m aws_batch_emulator``: serve the emulator in the foreground."""

from aws_batch_emulator.cli import main

main()
