"""The ground layer: the tracker and detection, the configuration, the agent's log and its error
guard.

Pure Python on the start-up path: imports no other layer of leakagent, no wrapt, no OpenTelemetry.
"""
