#!/usr/bin/env bash
# Lints the SAM template and the state machine, offline, with pinned tools the script installs:
#   cfn-lint and `sam validate --lint` (PyPI, local/tools/requirements.txt, in <repo>/.venv-tools),
#   asl-validator (npm, local/tools/package-lock.json, in local/tools/node_modules) on
#   each statemachine/*.asl.json after its placeholders get plausible values;
#   checkov (PyPI, local/tools/checkov-requirements.txt, in <repo>/.venv-checkov) on the
#   template: every check passes, or is skipped on its resource with the reason beside it.
# Exits non-zero on any finding. Quick when the tools are up to date.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$repo/local/tools"
venv="$(bash "$repo/local/tools.sh")"

log() { printf 'lint-template: %s\n' "$*" >&2; }

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

checkov_venv="$repo/.venv-checkov"
want="$(sha256sum local/tools/checkov-requirements.txt | cut -d' ' -f1)"
if [[ "$(cat "$checkov_venv/.requirements.sha256" 2>/dev/null)" != "$want" ]]; then
    log "installing checkov into $checkov_venv (about 60 s)"
    rm -rf "$checkov_venv"
    "${PYTHON:-python3}" -m venv "$checkov_venv"
    "$checkov_venv/bin/pip" install --disable-pip-version-check -q -r local/tools/checkov-requirements.txt >&2
    printf '%s\n' "$want" >"$checkov_venv/.requirements.sha256"
fi
log "checkov template.yaml"
"$checkov_venv/bin/checkov" --file template.yaml --framework cloudformation --compact --quiet \
    --skip-download

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
    "$tools/node_modules/.bin/asl-validator" --json-path "$out"
done
