#!/usr/bin/env bash
# Runs the whole `./x test` N times, each on a fresh clone of the current
# commit (what CI and a newcomer get), and reports every failing run with
# the seeds it printed, so a failure can be replayed. Uncommitted changes
# are not tested: commit first. Each clone is made at the same path and
# builds into one shared target dir, so compiled dependencies are reused
# (the workspace itself rebuilds); CI_REPEAT_COLD=1 builds every run from
# nothing, as on a new machine.
#   scripts/ci-repeat.sh N [OUT_DIR]
set -euo pipefail

runs="${1:?usage: ci-repeat.sh N [OUT_DIR]}"
root="$(cd "$(dirname "$0")/.." && pwd)"
commit="$(git -C "$root" rev-parse HEAD)"
out="${2:-$root/target/ci-repeat/$(git -C "$root" rev-parse --short HEAD)}"
mkdir -p "$out"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]]; then
    echo "ci-repeat: the tree has uncommitted changes; testing $commit as committed" >&2
fi

passed=0
failed=0
summary="$out/summary.md"
printf '# ci-repeat at %s\n\n| run | result | seconds | seeds and failing tests |\n|---|---|---|---|\n' "$commit" >"$summary"
for run in $(seq 1 "$runs"); do
    clone="$work/revaer"
    rm -rf "$clone"
    if [[ "${CI_REPEAT_COLD:-0}" == 1 ]]; then
        export CARGO_TARGET_DIR="$work/target-$run"
    else
        export CARGO_TARGET_DIR="$out/target"
    fi
    git clone -q --no-hardlinks "$root" "$clone"
    git -C "$clone" checkout -q "$commit"
    log="$out/run-$run.log"
    start=$(date +%s)
    echo "ci-repeat: run $run of $runs (log: $log)"
    if (cd "$clone" && ./x test) >"$log" 2>&1; then
        result=pass
        passed=$((passed + 1))
    else
        result=FAIL
        failed=$((failed + 1))
    fi
    seconds=$(($(date +%s) - start))
    # Seeds (REVAER_*_SEED=..., schemathesis --seed) and failing test names.
    # (`|| true`: a log without seeds is fine, and must not end the loop
    # under `set -e -o pipefail`.)
    notes="$({ grep -Eo '(REVAER_[A-Z_]*SEED=[0-9]+|--seed [0-9]+|SCHEMATHESIS_SEED=[0-9]+)' "$log" || true; } | sort -u | tr '\n' ' ')"
    if [[ "$result" == FAIL ]]; then
        notes="$notes$({ grep -E '^\s+FAIL \[' "$log" || true; } | sed -E 's/.*\) //' | sort -u | tr '\n' ';')"
        [[ -n "$notes" ]] || notes="$(tail -n 3 "$log" | tr '\n' ' ')"
    fi
    printf '| %s | %s | %s | %s |\n' "$run" "$result" "$seconds" "$notes" >>"$summary"
    echo "ci-repeat: run $run: $result in ${seconds} s ${notes}"
    rm -rf "$clone"
    if [[ "${CI_REPEAT_COLD:-0}" == 1 ]]; then rm -rf "$CARGO_TARGET_DIR"; fi
done
printf '\nci-repeat passed=%s failed=%s of %s\n' "$passed" "$failed" "$runs" | tee -a "$summary"
[[ "$failed" -eq 0 ]]
