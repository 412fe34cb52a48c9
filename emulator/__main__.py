"""``python -m emulator``: same as ``usage-etl emulator``."""

from emulator.cli import main

raise SystemExit(main())
