"""What crosses a service boundary in Ferry: contract models, auth, settings, AWS clients, errors.

This package imports no service. Services import it; never the other way round.
"""
