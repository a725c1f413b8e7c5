"""leakagent's pytest plugin: ``plugin`` is the light ``pytest11`` entry point, ``checker`` the
per-test check it loads with ``--leakagent``."""
