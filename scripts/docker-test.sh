#!/usr/bin/env bash
# `just docker-test`: build the image from ./Dockerfile with podman and check
# the container contract (docs/guides/container.md) end to end:
#   read-only root filesystem, non-root user, /data and /config volumes,
#   HEALTHCHECK turning healthy, a torrent added through the published API
#   port from the host, volume ownership/permissions, clean stop on SIGTERM.
#
# Registry pulls do not work everywhere, so both base images are made
# locally and passed to the Dockerfile as build args:
#   localhost/debian:bookworm-slim   debootstrap --variant=minbase, podman import
#   localhost/revaer-rust:<version>  that + the host's Rust toolchain
# Both are cached in podman storage under target/docker/ (delete that dir to
# start over); the build stage's cargo cache mounts live in buildah's cache
# dir (/var/tmp/buildah-cache for root). Podman runs with runc (crun fails on hybrid cgroups), the
# docker image format (the OCI format drops HEALTHCHECK) and explicit
# ulimits (runc cannot raise them without CAP_SYS_RESOURCE).
#
# Env: REVAER_DOCKER_BINARIES=prebuilt copies target/release binaries
# instead of compiling in the build stage (default: source).
# REVAER_DOCKER_KEEP=1 keeps the container and data dir for inspection.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
say() { printf 'docker-test: %s\n' "$*" >&2; }
as_root() { if [[ "$(id -u)" -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# --- tools -------------------------------------------------------------------
missing=""
for pkg in podman runc debootstrap uidmap slirp4netns fuse-overlayfs containernetworking-plugins \
           iptables debian-archive-keyring curl; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
done
if [[ -n "$missing" ]]; then
    say "installing Debian packages:$missing"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    # shellcheck disable=SC2086
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
fi

# --- podman, with storage under target/docker/ ---------------------------------
work="$root/target/docker"
mkdir -p "$work"
conf="$work/containers.conf"
cat >"$conf" <<'CONF'
[containers]
default_ulimits = ["nofile=16384:16384", "nproc=4096:4096"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$conf"
pm() { podman --root "$work/storage" --runroot "$work/runroot" --runtime runc "$@"; }

base_image="localhost/debian:bookworm-slim"
rust_version="$(rustc --version | awk '{print $2}')"
rust_image="localhost/revaer-rust:$rust_version"
image="localhost/revaer:test"
name="revaer-docker-test"

# --- base image ----------------------------------------------------------------
if ! pm image exists "$base_image"; then
    mirror="$(grep -rhoE '^(URIs:|deb) +https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
        | grep -oE 'https?://[^ ]+' | head -n1 || true)"
    mirror="${mirror:-http://deb.debian.org/debian}"
    rootfs="$work/rootfs"
    as_root rm -rf "$rootfs"
    say "debootstrap bookworm minbase from $mirror"
    start=$SECONDS
    as_root debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
    # Like the official image: bookworm, bookworm-updates and security updates.
    cat <<SOURCES | as_root tee "$rootfs/etc/apt/sources.list.d/debian.sources" >/dev/null
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${mirror%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    as_root rm -f "$rootfs/etc/apt/sources.list"
    # What the official slim image does: no apt caches or lists kept.
    cat <<'APT' | as_root tee "$rootfs/etc/apt/apt.conf.d/docker-clean" >/dev/null
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
APT
    as_root sh -c "rm -rf '$rootfs'/var/lib/apt/lists/* '$rootfs'/var/cache/apt/* '$rootfs'/var/log/*.log"
    as_root tar -C "$rootfs" -c . | pm import --change 'CMD ["bash"]' - "$base_image" >/dev/null
    as_root rm -rf "$rootfs"
    say "base image $base_image built in $((SECONDS - start)) s"
fi

# --- Rust builder image --------------------------------------------------------
if ! pm image exists "$rust_image"; then
    sysroot="$(rustc --print sysroot)"
    certs="$work/certs"
    rm -rf "$certs"; mkdir -p "$certs"
    cp /usr/local/share/ca-certificates/*.crt "$certs/" 2>/dev/null || true
    say "builder image $rust_image from $sysroot"
    start=$SECONDS
    pm build --pull=never --format docker \
        --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 \
        --build-arg BASE_IMAGE="$base_image" \
        --build-context toolchain="$sysroot" --build-context certs="$certs" \
        -f "$root/packaging/docker/builder.Dockerfile" -t "$rust_image" "$work/certs"
    say "builder image built in $((SECONDS - start)) s"
fi

# --- the image -----------------------------------------------------------------
binaries="${REVAER_DOCKER_BINARIES:-source}"
extra=()
if [[ "$binaries" == prebuilt ]]; then
    (cd "$root" && cargo build --release --locked --bins \
        -p revaer-supervisor -p revaer-api -p revaer-engine -p revaer-fsops -p revaer-cli)
    extra+=(--build-context "prebuilt=${CARGO_TARGET_DIR:-$root/target}/release")
fi
say "building $image (BINARIES=$binaries)"
start=$SECONDS
pm build --pull=never --format docker --layers \
    --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 \
    --build-arg RUST_IMAGE="$rust_image" --build-arg RUNTIME_IMAGE="$base_image" \
    --build-arg BINARIES="$binaries" "${extra[@]}" \
    -t "$image" "$root"
build_secs=$((SECONDS - start))
size="$(pm image inspect --format '{{.Size}}' "$image")"
say "image built in ${build_secs} s, size $((size / 1000000)) MB"

[[ "$(pm image inspect --format '{{.Config.User}}' "$image")" == "10001:10001" ]] \
    || { say "FAIL: image user is not 10001:10001"; exit 1; }
pm image inspect --format '{{json .Config.Healthcheck}}' "$image" | grep -q 'health' \
    || { say "FAIL: image has no HEALTHCHECK"; exit 1; }
[[ "$(pm image inspect --format '{{.Config.StopSignal}}' "$image")" == "SIGTERM" ]] \
    || { say "FAIL: STOPSIGNAL is not SIGTERM"; exit 1; }

# --- run it read-only as non-root with volumes ---------------------------------
tmp="$(mktemp -d "$work/run.XXXXXX")"
data="$tmp/data"; cfg="$tmp/config"
mkdir -p "$data" "$cfg"
cleanup() {
    local rc=$?
    if [[ $rc -ne 0 ]]; then
        say "container logs:"; pm logs "$name" 2>&1 | tail -n 40 >&2 || true
    fi
    if [[ "${REVAER_DOCKER_KEEP:-0}" != 1 ]]; then
        pm rm -f -t 5 "$name" >/dev/null 2>&1 || true
        rm -rf "$tmp"
    else
        say "kept container $name and $tmp"
    fi
    exit "$rc"
}
trap cleanup EXIT
pm rm -f -t 5 "$name" >/dev/null 2>&1 || true

# Seed config through the read-only /config volume: API on all interfaces of
# the container, DHT/LSD/UPnP/NAT-PMP off (no traffic beyond loopback tests).
cat >"$cfg/revaer.toml" <<'TOML'
[api]
listen = "0.0.0.0:7070"

[engine]
listen_interfaces = "0.0.0.0:6881"
enable_dht = false
enable_lsd = false
enable_upnp = false
enable_natpmp = false
TOML
chmod 0644 "$cfg/revaer.toml"

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
say "starting $name (API on 127.0.0.1:$port)"
pm run -d --name "$name" \
    --ulimit nofile=16384:16384 --ulimit nproc=4096:4096 \
    --read-only --read-only-tmpfs=false --tmpfs /tmp:rw,nosuid,nodev,size=16m,mode=1777 \
    --cap-drop ALL --security-opt no-new-privileges \
    -v "$data:/data:U" -v "$cfg:/config:ro" \
    -p "127.0.0.1:$port:7070" \
    "$image" >/dev/null

say "waiting for healthy"
start=$SECONDS
healthy=0
for _ in $(seq 1 90); do
    if pm healthcheck run "$name" >/dev/null 2>&1; then healthy=1; break; fi
    [[ "$(pm inspect --format '{{.State.Running}}' "$name")" == true ]] || break
    sleep 1
done
[[ $healthy -eq 1 ]] || { say "FAIL: not healthy"; pm exec "$name" /app/revaer --output json health >&2 || true; exit 1; }
say "healthy after $((SECONDS - start)) s"

url="http://127.0.0.1:$port"
curl -sf "$url/health" >/dev/null || { say "FAIL: $url/health not reachable from the host"; exit 1; }
# /health/full is loopback-only without a key: the host is not the container's loopback.
code="$(curl -s -o /dev/null -w '%{http_code}' "$url/health/full")"
[[ "$code" == 401 ]] || { say "FAIL: /health/full from the host without a key answered $code, want 401"; exit 1; }

key="$(cat "$data/bootstrap-admin.key")"
hash="$(printf 'revaer-docker-test-%s' "$$" | sha1sum | cut -c1-40)"
code="$(curl -s -o "$tmp/add.json" -w '%{http_code}' -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' \
    -d "{\"magnet\": \"magnet:?xt=urn:btih:$hash&dn=docker-test\", \"paused\": true}" \
    "$url/v1/torrents")"
[[ "$code" == 201 ]] || { say "FAIL: POST /v1/torrents answered $code: $(cat "$tmp/add.json")"; exit 1; }
curl -sf -H "Authorization: Bearer $key" "$url/v1/torrents" | grep -q "$hash" \
    || { say "FAIL: the added torrent is not listed"; exit 1; }
curl -sf -H "Authorization: Bearer $key" "$url/health/full" | grep -q '"status":"ok"' \
    || { say "FAIL: /health/full with a key is not ok"; exit 1; }
say "torrent $hash added through the API"

# --- users, read-only root, volume permissions ---------------------------------
[[ "$(pm exec "$name" id -u)" == 10001 ]] || { say "FAIL: not running as uid 10001"; exit 1; }
if pm exec "$name" sh -c 'echo x > /app/probe' 2>/dev/null; then say "FAIL: /app is writable"; exit 1; fi
if pm exec "$name" sh -c 'echo x > /etc/probe' 2>/dev/null; then say "FAIL: root fs is writable"; exit 1; fi
if pm exec "$name" sh -c 'echo x > /config/probe' 2>/dev/null; then say "FAIL: /config (ro) is writable"; exit 1; fi
pm exec "$name" sh -c 'echo x > /tmp/probe && rm /tmp/probe' || { say "FAIL: /tmp tmpfs not writable"; exit 1; }
pm exec "$name" test -f /app/docs/api/openapi.json || { say "FAIL: /app/docs/api/openapi.json missing"; exit 1; }
for bin in revaerd revaer-api revaer-engine revaer-fsops revaer; do
    pm exec "$name" test -x "/app/$bin" || { say "FAIL: /app/$bin missing"; exit 1; }
done
expect_stat() { # path on the host, expected "uid mode"
    local got; got="$(stat -c '%u %a' "$1")"
    [[ "$got" == "$2" ]] || { say "FAIL: $1 is '$got', want '$2'"; exit 1; }
}
expect_stat "$data/bootstrap-admin.key" "10001 600"
expect_stat "$data/run" "10001 700"
for d in state state/api state/engine downloads library; do
    [[ "$(stat -c %u "$data/$d")" == 10001 ]] || { say "FAIL: $data/$d not owned by 10001"; exit 1; }
done
[[ "$(stat -c %u "$data/revaer.toml")" == 10001 ]] || { say "FAIL: revaer.toml not owned by 10001"; exit 1; }
cmp -s "$cfg/revaer.toml" "$data/revaer.toml" || { say "FAIL: revaer.toml was not seeded from /config"; exit 1; }
ls "$data/state/engine" | grep -qi "$hash" || say "note: no state file named after $hash in state/engine (layout may differ)"
say "read-only root, uid 10001, volume ownership and modes ok"

# --- clean stop ----------------------------------------------------------------
start=$SECONDS
pm stop -t 30 "$name" >/dev/null
stop_secs=$((SECONDS - start))
exit_code="$(pm inspect --format '{{.State.ExitCode}}' "$name")"
[[ "$exit_code" == 0 ]] || { say "FAIL: revaerd exited with $exit_code after SIGTERM"; exit 1; }
say "stopped cleanly (SIGTERM, exit 0) in ${stop_secs} s"
say "PASS (image build ${build_secs} s, size $((size / 1000000)) MB)"
