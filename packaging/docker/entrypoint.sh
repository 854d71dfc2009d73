#!/bin/sh
# Container entrypoint for revaerd (see docs/guides/container.md).
#
# revaerd reads its config only from <data>/revaer.toml. Its embedded default
# binds the API to 127.0.0.1:7070, which is unreachable from outside a
# container, so on first start (no /data/revaer.toml yet) this script seeds
# the config file:
#   - from /config/revaer.toml when that exists (copied once; later edits
#     belong in /data/revaer.toml, which revaerd watches live), else
#   - with a minimal file that binds the API to 0.0.0.0:7070. Every other key
#     keeps its embedded default (listed in the README and config/src/lib.rs).
# An existing /data/revaer.toml is never touched. Arguments are passed on
# to revaerd; exec keeps revaerd as PID 1 (it reaps its own children).
set -eu

data="${REVAER_DATA_DIR:-/data}"
config="$data/revaer.toml"
seed="${REVAER_CONFIG_SEED:-/config/revaer.toml}"

umask 027
if [ ! -e "$config" ]; then
    if [ -f "$seed" ]; then
        cp "$seed" "$config.tmp"
        echo "entrypoint: seeded $config from $seed" >&2
    else
        cat >"$config.tmp" <<'TOML'
# Written by the container entrypoint on first start; edit freely (watched
# live). Every key not named here keeps its embedded default.
[api]
# Inside a container the API must listen on all interfaces; publish the port
# only where it should be reachable (e.g. -p 127.0.0.1:7070:7070).
listen = "0.0.0.0:7070"
TOML
        echo "entrypoint: wrote $config (API on 0.0.0.0:7070)" >&2
    fi
    mv "$config.tmp" "$config"
fi

exec /app/revaerd --data-dir "$data" "$@"
