"""``python -m aws_batch_emulator.events_main``: the events endpoint's process.

A module of its own, which the package never imports: run with ``-m``, a module the package
had already imported (``events_server``, through ``server``) would run a second time, and
Python warns about that at every start.
"""

from aws_batch_emulator.events_server import main

if __name__ == "__main__":
    main()
