#!/usr/bin/env bash
# The web app: installs its npm packages (pinned by package-lock.json) when missing, type-checks it, and
# checks that building it reproduces the committed web/dist byte for byte (the gateway embeds web/dist, so
# what runs is what the sources say). Called by scripts/test.sh; the browser test itself is
# tests/tests/it/web.rs.
set -euo pipefail
cd "$(dirname "$0")/../web"

if [ ! -d node_modules/vite ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "installing the web app's npm packages (vite, preact, playwright-core; no browser download)"
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
npx tsc --noEmit -p tsconfig.json
npx vite build --logLevel warn --outDir "$out/dist"
if ! diff -r dist "$out/dist"; then
  echo "web/dist is not what web/ builds: run \`npm run build\` in web/ and commit web/dist" >&2
  exit 1
fi
echo "web/dist matches its sources; JavaScript gzipped:"
for f in dist/assets/*.js; do printf '  %s %s bytes\n' "$f" "$(gzip -9c "$f" | wc -c)"; done
