#!/usr/bin/env bash
# Runs schemathesis against a live revaerd (debug build in target/debug) on
# a throw-away data dir, using the committed OpenAPI document. Fails on any
# server error or response that violates the schema. Loopback only: DHT,
# LSD, UPnP and NAT-PMP are off; magnets it adds never find peers.
#
# Reproducible: first every kept case in scripts/api-contract-cases/ is
# replayed (scripts/api-contract-replay.py; each one a request some run
# once failed on), then schemathesis generates cases from a fixed seed, with
# no example database and one worker (it feeds values from earlier answers
# into later requests, so the order matters), and never rotates or revokes
# the key it runs with (scripts/api-contract-hooks.py): the same build
# sends the same requests in the same order (up to the random key ids the
# daemon issues).
#   SCHEMATHESIS_SEED          seed of the generated cases (default fixed)
#   SCHEMATHESIS_MAX_EXAMPLES  cases per operation (default 30)
# `just fuzz-api` runs it with fresh seeds and more examples.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
bin="${REVAER_BIN_DIR:-$root/target/debug}"
max_examples="${SCHEMATHESIS_MAX_EXAMPLES:-30}"
seed="${SCHEMATHESIS_SEED:-14002}"
checks="not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance"
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
# The id of the run's key, which the hooks keep schemathesis from rotating.
key_id="$(curl -sf -H "Authorization: Bearer $key" "$url/v1/keys" |
    "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)[0]["id"])')"

failed() {
    status=$?
    echo "--- revaerd log (tail) ---"
    tail -n 50 "$data/revaerd.log"
    echo "schemathesis seed: $seed (replay: SCHEMATHESIS_SEED=$seed SCHEMATHESIS_MAX_EXAMPLES=$max_examples $0)"
    exit "$status"
}

# Kept cases first, on a fresh daemon.
"$venv/bin/python" "$root/scripts/api-contract-replay.py" \
    "$root/docs/api/openapi.json" "$url" "$key" "$root/scripts/api-contract-cases" "$checks" ||
    failed

# 404s from operations on made-up ids are expected; the contract is "no 5xx,
# every answer matches the documented schema, status and content type".
echo "schemathesis seed: $seed, $max_examples examples per operation"
SCHEMATHESIS_HOOKS="$root/scripts/api-contract-hooks.py" REVAER_CONTRACT_KEY_ID="$key_id" \
    "$st" run "$root/docs/api/openapi.json" \
    --url "$url" \
    --header "Authorization: Bearer $key" \
    --checks "$checks" \
    --exclude-path /v1/events \
    --phases examples,coverage,fuzzing \
    --max-examples "$max_examples" \
    --seed "$seed" \
    --generation-database none \
    --request-timeout 10 \
    --workers 1 \
    --suppress-health-check all \
    --no-color "$@" || failed
