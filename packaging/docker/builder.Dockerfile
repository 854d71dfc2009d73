# Local Rust builder image for `just docker-test` (scripts/docker-test.sh),
# used as the Dockerfile's RUST_IMAGE where registry pulls are unavailable.
# It is the local Debian base plus the host's Rust toolchain (build context
# `toolchain` = `rustc --print sysroot`) and the host's extra CA certificates
# (build context `certs`; needed when HTTPS goes through an intercepting proxy).
ARG BASE_IMAGE=localhost/debian:bookworm-slim
FROM ${BASE_IMAGE}
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gcc g++ libc6-dev make \
        pkg-config libssl-dev libtorrent-rasterbar-dev \
 && rm -rf /var/lib/apt/lists/*
# `certs` and `toolchain` are named build contexts, not stages.
# hadolint ignore=DL3022
COPY --from=certs . /usr/local/share/ca-certificates/
RUN update-ca-certificates
# hadolint ignore=DL3022
COPY --from=toolchain bin /usr/local/rust/bin
# hadolint ignore=DL3022
COPY --from=toolchain lib /usr/local/rust/lib
# hadolint ignore=DL3022
COPY --from=toolchain libexec /usr/local/rust/libexec
ENV CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/rust/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
RUN mkdir -p /usr/local/cargo && rustc --version && cargo --version
