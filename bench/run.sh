#!/usr/bin/env bash
# `make bench`: builds what the benchmarks run, then runs them once and writes BENCHMARKS.md.
#   - the functions and the bare lambda_runtime floor, release profile (target/release);
#   - the bench driver and the local AWS, as `make test` builds them (target/debug);
#   - Python 3.11 + boto3 + awslambdaric, pinned (bench/requirements.txt), in target/bench/venv;
#   - moto (local/moto-venv.sh) and the template tools (local/tools.sh), as the tests install them.
# Knobs (environment): see bench/src/main.rs (BENCH_RUNS, BENCH_BAKES, BENCH_FANOUT, ...).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cargo="${CARGO:-cargo}"
python="${PYTHON:-python3}"
log() { printf 'bench: %s\n' "$*" >&2; }

functions=(trigger start-build build-watch build-events announce gate publish-region)
packages=()
for f in "${functions[@]}"; do packages+=(-p "$f"); done

log "release build: ${functions[*]} and bench-bare"
"$cargo" build --release --locked "${packages[@]}" -p bench-bare
log "debug build: the workspace's binaries (the bench driver, the local AWS)"
"$cargo" build --workspace --bins --locked

venv="$repo/target/bench/venv"
stamp="$venv/.requirements.sha256"
want="$({ sha256sum bench/requirements.txt | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version.split()[0])'; } | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    log "installing bench/requirements.txt into $venv"
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r bench/requirements.txt
    echo "$want" >"$stamp"
fi
bash local/moto-venv.sh >/dev/null
bash local/tools.sh >/dev/null

export BENCH_COMMAND="${BENCH_COMMAND:-make bench}"
log "running (about 10 minutes)"
exec "$repo/target/debug/bench"
