"""The composition root of one process: builds the tracker, hooks and outputs and wires them.

The only layer that knows all the others (``agent``: start-up; ``lifecycle``: report, exit, fork).
"""
