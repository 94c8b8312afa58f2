"""``python -m vaeforge`` is the ``vaeforge`` command."""

from vaeforge.cli import main

raise SystemExit(main())
