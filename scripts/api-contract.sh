#!/usr/bin/env bash
# Runs schemathesis against a live revaerd (debug build in target/debug) on
# a throw-away data dir, using the committed OpenAPI document. Fails on any
# server error or response that violates the schema. Loopback only: DHT,
# LSD, UPnP and NAT-PMP are off; magnets it adds never find peers.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REVAER_BIN_DIR:-$root/target/debug}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-30}"
# schemathesis lives in a private venv under target/ (never the system Python).
venv="$root/target/tools/schemathesis"
if [[ ! -x "$venv/bin/st" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "schemathesis>=4.32,<5"
fi
st="$venv/bin/st"

data="$(mktemp -d)"
cleanup() {
    if [[ -n "${pid:-}" ]] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        wait "$pid" || true
    fi
    rm -rf "$data"
}
trap cleanup EXIT

cat >"$data/revaer.toml" <<'TOML'
[api]
listen = "127.0.0.1:0"
default_rate_per_minute = 1000000

[engine]
listen_interfaces = "127.0.0.1:0"
enable_dht = false
enable_lsd = false
enable_upnp = false
enable_natpmp = false
TOML

"$bin/revaerd" --data-dir "$data" >"$data/revaerd.log" 2>&1 &
pid=$!
for _ in $(seq 1 200); do
    [[ -s "$data/run/api.url" && -s "$data/bootstrap-admin.key" ]] && break
    sleep 0.05
done
url="$(cat "$data/run/api.url")"
key="$(cat "$data/bootstrap-admin.key")"
for _ in $(seq 1 200); do
    curl -sf -o /dev/null "$url/health/full" && break
    sleep 0.05
done

# 404s from operations on made-up ids are expected; the contract is "no 5xx,
# every answer matches the documented schema, status and content type".
"$st" run "$root/docs/api/openapi.json" \
    --url "$url" \
    --header "Authorization: Bearer $key" \
    --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance \
    --exclude-path /v1/events \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --request-timeout 10 \
    --workers 2 \
    --suppress-health-check all \
    --no-color "$@" || {
    status=$?
    echo "--- revaerd log (tail) ---"
    tail -n 50 "$data/revaerd.log"
    exit "$status"
}
