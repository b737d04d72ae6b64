#!/usr/bin/env bash
# The protobuf API and the TypeScript SDK: `buf lint` (STANDARD rules, exceptions in buf.yaml), `buf breaking`
# (FILE rules) against main, regenerating sdk/ts/src/gen (must change nothing), the SDK's build, and its
# tests against a real `smb up` (the debug binary: build it first). Installs the SDK's npm packages (pinned
# by package-lock.json) when missing. Called by scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
sdk="$root/sdk/ts"

if [ ! -x "$sdk/node_modules/.bin/buf" ] || [ "$sdk/package-lock.json" -nt "$sdk/node_modules/.package-lock.json" ]; then
  echo "installing the SDK's npm packages (buf, protoc-gen-es, connect, typescript)"
  (cd "$sdk" && npm ci --no-audit --no-fund --loglevel=error)
fi
buf="$sdk/node_modules/.bin/buf"

echo "-- buf lint"
"$buf" lint

echo "-- buf breaking"
# Against main; on main itself, against the commit before this one (what landed before). SMB_PROTO_BASE
# overrides (any git ref).
base="${SMB_PROTO_BASE:-}"
if [ -z "$base" ]; then
  if git rev-parse -q --verify main >/dev/null && [ "$(git rev-parse HEAD)" != "$(git rev-parse main)" ]; then
    base=main
  elif git rev-parse -q --verify HEAD~1 >/dev/null; then
    base=$(git rev-parse HEAD~1)
  fi
fi
if [ -n "$base" ] && git cat-file -e "$base:buf.yaml" 2>/dev/null; then
  base_dir=$(mktemp -d)
  trap 'rm -rf "$base_dir"' EXIT
  git archive "$base" buf.yaml proto | tar -x -C "$base_dir"
  "$buf" breaking --against "$base_dir"
  echo "no breaking change against $base"
else
  echo "no earlier buf.yaml to compare with (${base:-no base}); skipped"
fi

echo "-- regenerate (must change nothing)"
fresh=$(mktemp -d)
cp -r "$sdk/src/gen" "$fresh/committed"
(cd "$sdk" && PATH="$sdk/node_modules/.bin:$PATH" "$buf" generate "$root" --template buf.gen.yaml)
if ! diff -r "$fresh/committed" "$sdk/src/gen" >/dev/null; then
  diff -r "$fresh/committed" "$sdk/src/gen" | head -40
  rm -rf "$fresh"
  echo "sdk/ts/src/gen is not what proto/ generates: run \`npm run generate\` in sdk/ts and commit the result" >&2
  exit 1
fi
rm -rf "$fresh"

echo "-- build and test the SDK"
(cd "$sdk" && npx tsc -p tsconfig.json && SMB_BIN="$root/target/debug/smb" node --test test/)
