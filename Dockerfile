# syntax=docker/dockerfile:1
# The canary controller as a container image: `canary run` as a non-root user, the HTTP API
# (rollouts, commands, /metrics, /status) on port 8181, state in /var/lib/canary.
#
#   docker build -t canary:0.1.0 .
#   docker run -v canary-state:/var/lib/canary -v "$PWD/config/policies:/etc/canary/policies:ro" \
#     -e CANARY_MLFLOW_TRACKING_URI=... -e CANARY_PROMETHEUS_URL=... -e CANARY_API_TOKEN=... \
#     -p 127.0.0.1:8181:8181 canary:0.1.0
#
# Only the controller's runtime dependencies are installed: the MLflow client is
# mlflow-skinny, not the full mlflow with its server, pandas and scikit-learn. A policy whose
# serving.start runs model servers inside this container (e.g. `mlflow models serve`) needs
# them added: --build-arg EXTRA_PACKAGES="mlflow scikit-learn".

ARG PYTHON_VERSION=3.11

# --- build: canary's wheel, then a virtualenv holding it and its dependencies ---------------
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY canary ./canary
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .
ARG EXTRA_PACKAGES=""
RUN python -m venv /opt/canary \
 && /opt/canary/bin/pip install --no-cache-dir /wheels/canary-*.whl ${EXTRA_PACKAGES}

# --- runtime: the virtualenv on the same slim Python, no compiler, no pip cache -------------
FROM python:${PYTHON_VERSION}-slim AS runtime
RUN groupadd --system --gid 10001 canary \
 && useradd --system --uid 10001 --gid canary --home-dir /var/lib/canary \
      --shell /usr/sbin/nologin canary \
 && install -d -o canary -g canary -m 0750 /var/lib/canary \
 && install -d -m 0755 /etc/canary/policies
COPY --from=build /opt/canary /opt/canary
# The API listens on every interface of the container (reach it through a published port or
# a Service); state-changing calls still need CANARY_API_TOKEN. Policies are mounted at
# /etc/canary/policies; secrets come from the environment.
ENV PATH=/opt/canary/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/canary \
    CANARY_POLICIES=/etc/canary/policies \
    CANARY_STATE_DIR=/var/lib/canary \
    CANARY_API_HOST=0.0.0.0 \
    CANARY_API_PORT=8181 \
    CANARY_LOG_FORMAT=json
USER 10001:10001
WORKDIR /var/lib/canary
VOLUME ["/var/lib/canary"]
EXPOSE 8181
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('CANARY_API_PORT', '8181'), timeout=4)"]
ENTRYPOINT ["canary", "run"]
