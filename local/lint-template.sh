#!/usr/bin/env bash
# Lints the SAM template and the state machine, offline, with pinned tools the script installs:
#   cfn-lint and `sam validate --lint` (PyPI, local/lint/requirements.txt, in <repo>/.venv-lint),
#   asl-validator (npm, local/lint/package-lock.json, `npm ci` into local/lint/node_modules) on
#   each statemachine/*.asl.json after its placeholders get plausible values.
# Exits non-zero on any finding. Quick when the tools are up to date.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
lint="$repo/local/lint"
venv="$repo/.venv-lint"
python="${PYTHON:-python3}"

log() { printf 'lint-template: %s\n' "$*" >&2; }

# The stamp covers the pins and the interpreter; the venv is rebuilt when either changes.
want_py="$({ sha256sum "$lint/requirements.txt" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version.split()[0])'; } | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want_py" || ! -x "$venv/bin/sam" ]]; then
    log "installing cfn-lint and aws-sam-cli into $venv (about 45 s)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install --disable-pip-version-check -q -r "$lint/requirements.txt" >&2
    printf '%s\n' "$want_py" >"$venv/.requirements.sha256"
fi

want_js="$(sha256sum "$lint/package-lock.json" | cut -d' ' -f1)"
if [[ "$(cat "$lint/node_modules/.lock.sha256" 2>/dev/null)" != "$want_js" ]]; then
    log "installing asl-validator (npm ci)"
    (cd "$lint" && npm ci --no-audit --no-fund --loglevel=error >&2)
    printf '%s\n' "$want_js" >"$lint/node_modules/.lock.sha256"
fi

cd "$repo"
# Dummy region and credentials, no profile, no instance metadata: nothing reaches AWS.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
    SAM_CLI_TELEMETRY=0
unset AWS_PROFILE

log "cfn-lint template.yaml"
"$venv/bin/cfn-lint" template.yaml

log "sam validate --lint"
"$venv/bin/sam" validate --lint --template template.yaml

# Placeholders: `${...Arn}` become Lambda ARNs and `${...Seconds}` a number; any other kind is a
# finding (tests/tests/scenarios/template.rs checks each one against DefinitionSubstitutions).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
for asl in statemachine/*.asl.json; do
    out="$tmp/$(basename "$asl")"
    sed -E -e 's/\$\{([A-Za-z0-9]+)Arn\}/arn:aws:lambda:us-east-1:123456789012:function:bakery-\1/g' \
        -e 's/\$\{[A-Za-z0-9]+Seconds\}/60/g' "$asl" >"$out"
    if grep -n '\${' "$out" >&2; then
        log "$asl: placeholder of an unknown kind (above)"
        exit 1
    fi
    log "asl-validator $asl"
    "$lint/node_modules/.bin/asl-validator" --json-path "$out"
done
