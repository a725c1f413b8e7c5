"""``python -m leakagent``: the launcher."""

from leakagent.tools.cli import main

raise SystemExit(main())
