#!/usr/bin/env bash
# Ensure the project-local moto venv at <repo>/.venv matches local/requirements.txt.
# Creates (or recreates) it with python3 when it is missing or its stamp differs, then prints the
# absolute path of the venv's moto_server executable as the last line on stdout.
# Everything else goes to stderr. Quick and idempotent when up to date.
#
# Env: PYTHON (default python3) picks the interpreter used to create the venv.
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$script_dir/.." && pwd)"
venv="$repo/.venv"
req="$repo/local/requirements.txt"
stamp="$venv/.requirements.sha256"
moto_server="$venv/bin/moto_server"
python="${PYTHON:-python3}"

log() { printf 'moto-venv: %s\n' "$*" >&2; }

[[ -f "$req" ]] || { log "missing $req"; exit 1; }
command -v "$python" >/dev/null || { log "$python not found"; exit 1; }

# The stamp covers the requirements and the interpreter version the venv was built with.
want="$(
    {
        sha256sum "$req" | cut -d' ' -f1
        "$python" -c 'import sys; print("python", sys.version.split()[0])'
    } | sha256sum | cut -d' ' -f1
)"

up_to_date() {
    [[ -f "$stamp" && -x "$moto_server" && -x "$venv/bin/python" ]] &&
        [[ "$(cat "$stamp")" == "$want" ]] &&
        "$venv/bin/python" -c '' 2>/dev/null
}

if ! up_to_date; then
    # Serialize concurrent callers (e.g. parallel test jobs) where flock exists.
    if command -v flock >/dev/null; then
        # Lock the requirements file itself: no stray lock file in the work tree.
        exec 9<"$req"
        flock 9
    fi
    if ! up_to_date; then
        log "creating $venv from local/requirements.txt (takes ~40 s)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --disable-pip-version-check -q -r "$req" >&2
        [[ -x "$moto_server" ]] || { log "moto_server not installed at $moto_server"; exit 1; }
        # Written last: an interrupted install is redone on the next run.
        printf '%s\n' "$want" >"$stamp"
        log "ready"
    fi
fi

printf '%s\n' "$moto_server"
