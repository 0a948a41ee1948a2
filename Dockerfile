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
# The wheel merges core/, services/, clients/ and gen/ into the one `rentscout` namespace (hatchling,
# see [tool.hatch.build.targets.wheel] in pyproject.toml); nothing else is needed to build it.
COPY pyproject.toml ./
COPY core/ core/
COPY services/ services/
COPY clients/ clients/
COPY gen/ gen/
# Every dependency ships manylinux wheels (x86_64 and aarch64), so no compiler is needed;
# `pip wheel` fetches hatchling into an isolated build environment for the project's own wheel.
# The `server` extra is what the services need beyond the SDK (pyarrow, for Arrow exports).
RUN python -m pip wheel --wheel-dir /wheels ".[server]" \
 && python -m venv --without-pip /opt/rentscout \
 && python -m pip --python /opt/rentscout/bin/python install --no-index --find-links=/wheels "rentscout-dataplane[server]" \
 && /opt/rentscout/bin/python -c "import rentscout.main, rentscout.export.v1.export_pb2, rentscout.runtime.server, pyarrow.csv"

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
