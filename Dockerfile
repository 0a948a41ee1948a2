# syntax=docker/dockerfile:1
# RentScout data plane: one image for the three gRPC services (export, cache-query, analyzer).
#   docker build -t rentscout-dataplane:0.1.0 .
#   docker run --rm rentscout-dataplane:0.1.0                      # serve export (50051, metrics 9101)
#   docker run --rm rentscout-dataplane:0.1.0 serve cache-query     # 50052, metrics 9102
#   docker run --rm rentscout-dataplane:0.1.0 serve analyzer        # 50053, metrics 9103
#   docker run --rm rentscout-dataplane:0.1.0 db migrate            # any other CLI command
# Builder and runtime share one base image, so the virtualenv built in the first stage (absolute
# paths, compiled extensions) is valid in the second. Pin by tag here; add @sha256 in your registry.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# The workspace's three distributions (rentscout-core: core/ + gen/, rentscout-client: clients/,
# rentscout-server: services/; pyproject.toml at the root and in each folder). What it installs is exactly
# uv.lock: uv at the version and hashes the lock names, then `uv sync --frozen` of the `server` extra (the
# server with Arrow support and the client's `rentscout` command, no dev tools), as wheels, not editable.
# Every dependency ships manylinux wheels: no compiler. The server extra includes the OTLP/gRPC span
# exporter: traces leave a pod only when OTEL_EXPORTER_OTLP_ENDPOINT is set.
COPY pyproject.toml uv.lock ./
COPY scripts/lock_pin.py scripts/
COPY core/ core/
COPY services/ services/
COPY clients/ clients/
COPY gen/ gen/
RUN python scripts/lock_pin.py uv > /tmp/uv.txt \
 && python -m pip install --require-hashes --no-deps -r /tmp/uv.txt \
 && UV_PROJECT_ENVIRONMENT=/opt/rentscout python -m uv sync --frozen --no-editable --extra server \
 && /opt/rentscout/bin/python -c "import rentscout.main, rentscout.export.v1.export_pb2, rentscout.runtime.server, pyarrow.csv, opentelemetry.exporter.otlp.proto.grpc.trace_exporter"

FROM ${PYTHON_IMAGE} AS runtime
ARG UID=10001
LABEL org.opencontainers.image.title="rentscout-dataplane" \
      org.opencontainers.image.description="RentScout data plane: export, cache-query and analyzer gRPC services" \
      org.opencontainers.image.licenses="Proprietary"
ENV PATH=/opt/rentscout/bin:$PATH \
    VIRTUAL_ENV=/opt/rentscout \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A fixed numeric uid/gid so Kubernetes' runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid "${UID}" rentscout \
 && useradd --system --uid "${UID}" --gid rentscout --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin rentscout
COPY --from=builder /opt/rentscout /opt/rentscout
USER ${UID}:${UID}
WORKDIR /tmp
EXPOSE 50051 50052 50053 9101 9102 9103
# Server-wide health (""): SERVING from start until shutdown. The port follows RENTSCOUT_PORT; an
# unset or empty value means export's 50051, so set RENTSCOUT_PORT for the other services (the
# compose file does, and Kubernetes uses its own gRPC probes instead).
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["sh", "-c", "rentscout health --timeout 3 --target \"127.0.0.1:${RENTSCOUT_PORT:-50051}\" || exit 1"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["rentscout"]
CMD ["serve", "export"]
