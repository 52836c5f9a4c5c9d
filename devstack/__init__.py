"""The local stack: the embedded AWS emulator, the idempotent bootstrap, the process runner.

Nothing here is imported by a service; it starts them as processes, exactly as production would.
"""
