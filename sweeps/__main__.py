"""``python -m sweeps ...`` is the ``lottery`` command (what ``ray job submit`` calls)."""

from sweeps.cli import main

main()
