# syntax=docker/dockerfile:1
# One image per Ferry package, chosen with a build argument:
#   docker build --build-arg SERVICE=media_service -t ferry/media_service .
#   docker build --build-arg SERVICE=devstack -t ferry/devstack .   # for `python -m devstack.bootstrap`
# Settings come from the environment only (docs/configuration.md); AWS endpoints and credentials
# from botocore's own variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app

# Dependencies first: this layer is rebuilt only when pyproject.toml changes, not the code.
COPY pyproject.toml ./
RUN python -c "import subprocess, sys, tomllib; \
deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; \
subprocess.check_call([sys.executable, '-m', 'pip', 'install', *deps])"

ARG SERVICE=media_service
ENV FERRY_SERVICE=${SERVICE}
COPY shared/ ./shared/
COPY ${SERVICE}/ ./${SERVICE}/
# Exec-form CMD cannot expand a build argument: a two-line launcher fixes the package at build
# time and `exec`s it, so the service itself is PID 1 and receives SIGTERM (graceful stop).
RUN printf '#!/bin/sh\nexec python -m %s "$@"\n' "${SERVICE}" > /usr/local/bin/ferry-service \
    && chmod 0755 /usr/local/bin/ferry-service \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin ferry

USER ferry
# Containers listen on every interface; each service has its own default port (8081, 8083...).
ENV BIND_HOST=0.0.0.0
# The service's own settings say which port it listens on (BIND_PORT, or its default).
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import importlib, os, urllib.request; settings = importlib.import_module(os.environ['FERRY_SERVICE'] + '.settings').Settings(); urllib.request.urlopen(f'http://127.0.0.1:{settings.bind_port}/healthz', timeout=2)"]
CMD ["ferry-service"]
