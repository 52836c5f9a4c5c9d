"""Derivatives: what the worker makes of a verified original (pure, CPU-bound, file to files).

Everything here runs in a worker *process* (never on the event loop): functions take plain,
picklable arguments (paths, limits) and return plain results. Each media type has one entry
point; the worker uploads what it returns to `d/{sha256}/{key}` and records `meta`.
"""
