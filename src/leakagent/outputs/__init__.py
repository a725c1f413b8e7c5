"""What leaves the process: the JSON/text report, the memory readers and watcher, telemetry.

Imports ``core`` (and ``hooks`` only for the patcher's creation listeners); never the runtime.
"""
