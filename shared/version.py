"""Ferry's version, in one place.

pyproject.toml reads it from here (setuptools' `attr:`, without importing the package), every
service reports it on `/healthz` and prints it for `python -m <service> --version`. A plain
string rather than `importlib.metadata`: the container images copy the packages without
installing the distribution, so there is no metadata to read there.
"""

__version__ = "0.1.0"
