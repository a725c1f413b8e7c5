"""How creations are seen: the import hook, the ``threading.local`` stand-in, the wrapt patcher,
the catalog of client targets (data) and user targets, the call-site finder. Imports only ``core``.
"""
