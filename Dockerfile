# syntax=docker/dockerfile:1
# langgraph-stream-exporter image: stage 1 builds the project wheel, stage 2 installs it into a venv
# in /opt/venv on a clean python:3.11-slim and runs it as uid 1000 (the chart's runAsUser).
# Works with a read-only root filesystem: bytecode is compiled at install time and nothing writes
# outside /tmp at run time (the chart mounts an emptyDir there).
# tests/ship/test_image.py installs the wheel into a fresh venv the same way, since no container
# engine is available in CI.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Only what the wheel needs (.dockerignore keeps the rest out of the context).
COPY pyproject.toml README.md LICENSE ./
COPY exporter/ exporter/
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="langgraph-stream-exporter" \
      org.opencontainers.image.description="Synthetic streaming probes for LangGraph API deployments: TTFT and inter-token latency per graph node, to Prometheus and OTLP." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    HOME=/tmp
# NOTE: HOME=/tmp because the root filesystem is read-only in the chart; /tmp is the only
# writable path (emptyDir), so anything that insists on a home directory writes there.
RUN groupadd --gid 1000 exporter \
    && useradd --uid 1000 --gid 1000 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin exporter
COPY --from=build /wheels/ /tmp/wheels/
# The venv is owned by root: the process cannot modify its own code.
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir /tmp/wheels/*.whl \
    && rm -rf /tmp/wheels
COPY config/default.yaml /etc/langgraph-stream-exporter/config.yaml
USER 1000:1000
WORKDIR /tmp
EXPOSE 9465
ENTRYPOINT ["langgraph-stream-exporter"]
CMD ["run", "--config", "/etc/langgraph-stream-exporter/config.yaml"]
