"""``python -m leakagent``: the launcher."""

from .cli import main

raise SystemExit(main())
