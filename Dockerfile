# syntax=docker/dockerfile:1
# Revaer container image: `revaerd` and its sandboxed workers (`revaer-api`,
# `revaer-engine`, `revaer-fsops`) plus the `revaer` CLI, running as the
# non-root user `revaer`. How to run it: docs/guides/container.md.
#
# Base images are build arguments so that a local or mirrored image can be
# named (`just docker-test` builds both locally; registry pulls are not needed):
#   RUST_IMAGE     build stage: a Debian bookworm image with cargo/rustc
#   RUNTIME_IMAGE  runtime stage: Debian bookworm slim
# BINARIES=source (default) compiles in the build stage; BINARIES=prebuilt
# copies already-built release binaries from the build context `prebuilt`
# (`--build-context prebuilt=target/release`) instead.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARIES=source

# ---------------------------------------------------------------- build stage
FROM ${RUST_IMAGE} AS bins-source
# Debian's libtorrent (ABI 1, the one the bridge is written against); the
# package versions are those of the pinned base image's suite.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates g++ libssl-dev libtorrent-rasterbar-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The target dir and the cargo registry are cache mounts: a rebuild after a
# source change is incremental. The binaries are copied out in the same step.
RUN --mount=type=cache,id=revaer-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=revaer-target,target=/src/target \
    cargo build --release --locked --bins \
        -p revaer-supervisor -p revaer-api -p revaer-engine -p revaer-fsops -p revaer-cli \
 && mkdir -p /out \
 && cp target/release/revaerd target/release/revaer-api target/release/revaer-engine \
       target/release/revaer-fsops target/release/revaer /out/

# Already-built binaries (same Debian bookworm ABI) from `--build-context prebuilt=...`.
FROM ${RUNTIME_IMAGE} AS bins-prebuilt
# `prebuilt` is a named build context, not a stage.
# hadolint ignore=DL3022
COPY --from=prebuilt revaerd revaer-api revaer-engine revaer-fsops revaer /out/

# A stage chosen by BINARIES, not an image: no tag to pin.
# hadolint ignore=DL3006
FROM bins-${BINARIES} AS bins

# -------------------------------------------------------------- runtime stage
FROM ${RUNTIME_IMAGE} AS runtime
# Runtime libraries only: libtorrent (pulls libssl3, libstdc++6) and CA certificates.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libtorrent-rasterbar2.0 \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
RUN groupadd --system --gid 10001 revaer \
 && useradd --system --uid 10001 --gid revaer --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin revaer \
 && mkdir -p /data /config \
 && chown revaer:revaer /data /config \
 && chmod 0750 /data
WORKDIR /app
# Worker binaries must sit beside revaerd. Owned by root: the daemon cannot modify them.
COPY --from=bins --chmod=0755 /out/ /app/
COPY --chmod=0644 docs/api/openapi.json /app/docs/api/openapi.json
COPY --chmod=0755 packaging/docker/entrypoint.sh /app/entrypoint.sh
ENV REVAER_DATA_DIR=/data \
    REVAER_API_URL=http://127.0.0.1:7070 \
    PATH=/app:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
VOLUME ["/data", "/config"]
# API, BitTorrent peers (TCP and uTP/UDP).
EXPOSE 7070/tcp 6881/tcp 6881/udp
USER 10001:10001
# revaerd shuts the workers down in order on SIGTERM and reaps its children
# itself: no init shim is needed.
STOPSIGNAL SIGTERM
# /health/full answers loopback clients without a key; exit 5 = degraded,
# 6 = unreachable. The CLI is the HTTP client (no curl in the image).
HEALTHCHECK --interval=30s --timeout=10s --start-period=30s --retries=3 \
    CMD ["/app/revaer", "--timeout", "5s", "--output", "json", "health"]
ENTRYPOINT ["/app/entrypoint.sh"]
