#!/usr/bin/env bash
# Builds every function for Lambda exactly as `sam build` does for a user: SAM's rust-cargolambda
# build method runs cargo-lambda once per function (`cargo lambda build --release --bin <Binary>`),
# with zig as the cross-linker, into the workspace's target/, and leaves .aws-sam/build/template.yaml
# and .aws-sam/build/<LogicalId>/bootstrap. No container, nothing sent to AWS.
#   local/package.sh [arm64|x86_64]      the functions' architecture (template parameter), arm64 by default
# SAM CLI, cargo-lambda and zig are pinned in local/tools/requirements.txt and installed into
# <repo>/.venv-tools by local/tools.sh. Only the Rust toolchain (with the target's standard
# library: rustup target add aarch64-unknown-linux-gnu for arm64) comes from the machine.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="${1:-arm64}"
case "$arch" in
    arm64 | x86_64) ;;
    *) echo "package: architecture $arch is neither arm64 nor x86_64" >&2; exit 2 ;;
esac
venv="$(bash "$repo/local/tools.sh")"

# SAM finds cargo-lambda on PATH, and cargo-lambda finds zig as `python3 -m ziglang` (or `zig` on
# PATH): the venv's python3 has the ziglang wheel.
export PATH="$venv/bin:$PATH"
# Dummy region and credentials, no profile, no instance metadata, no telemetry: nothing reaches AWS.
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 \
    AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_SESSION_TOKEN=testing \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true \
    SAM_CLI_TELEMETRY=0
unset AWS_PROFILE

cd "$repo"
# samconfig.toml's [default.build.parameters] apply, as they do to a user's `sam build`.
sam build --template template.yaml --build-dir .aws-sam/build --parameter-overrides "Architecture=$arch"

# Every function of the built template has its executable bootstrap.
functions=0
while read -r id; do
    functions=$((functions + 1))
    [[ -x ".aws-sam/build/$id/bootstrap" ]] || { echo "package: .aws-sam/build/$id/bootstrap is missing" >&2; exit 1; }
    printf 'package: %-24s %9d bytes  .aws-sam/build/%s/bootstrap\n' "$id" "$(stat -c %s ".aws-sam/build/$id/bootstrap")" "$id" >&2
done < <("$venv/bin/python" - .aws-sam/build/template.yaml <<'PY'
import sys
from cfnlint.decode import decode
template, errors = decode(sys.argv[1])
if errors:
    sys.exit(f"package: {sys.argv[1]}: {errors}")
for name, resource in template["Resources"].items():
    if resource.get("Type") == "AWS::Serverless::Function":
        print(name)
PY
)
[[ $functions -gt 0 ]] || { echo "package: no function in .aws-sam/build/template.yaml" >&2; exit 1; }
echo "package: $functions functions for $arch in .aws-sam/build" >&2
