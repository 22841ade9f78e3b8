#!/usr/bin/env bash
# Re-vendors the browser assets the API serves itself (no CDN, no build step for users):
#   uPlot (the dashboard's charts) and swagger-ui-dist (/docs),
# each from its npm tarball (`npm pack NAME@VERSION`), into api/static/vendor/<name>/ with its
# LICENSE and a VERSION file (name, version, tarball sha512 integrity). Needs npm and the registry.
# Usage: scripts/vendor.sh [uplot@X.Y.Z] [swagger-ui-dist@X.Y.Z]   (defaults below)
# (No ReDoc: its standalone bundle loads its logo from cdn.redoc.ly, so it is not offline.)
set -euo pipefail
cd "$(dirname "$0")/.."
UPLOT=${1:-uplot@1.6.32}
SWAGGER=${2:-swagger-ui-dist@5.36.0}
VENDOR=api/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# unpack SPEC DEST FILE...: copies FILE... (paths inside the package) plus LICENSE into $VENDOR/DEST.
unpack() {
  local spec=$1 dest=$2; shift 2
  local json tarball integrity version
  json=$(cd "$work" && npm pack --json --silent "$spec")
  tarball=$(node -e 'const p=JSON.parse(process.argv[1])[0]; console.log(p.filename)' "$json")
  integrity=$(node -e 'const p=JSON.parse(process.argv[1])[0]; console.log(p.integrity)' "$json")
  version=$(node -e 'const p=JSON.parse(process.argv[1])[0]; console.log(p.version)' "$json")
  mkdir -p "$work/$dest" && tar xzf "$work/$tarball" -C "$work/$dest"
  rm -rf "${VENDOR:?}/$dest" && mkdir -p "$VENDOR/$dest"
  for file in "$@" LICENSE; do cp "$work/$dest/package/$file" "$VENDOR/$dest/"; done
  printf '%s %s\nintegrity %s\nfrom npm pack %s (scripts/vendor.sh)\n' "${spec%@*}" "$version" "$integrity" "$spec" \
    > "$VENDOR/$dest/VERSION"
  echo "vendored ${spec%@*} $version into $VENDOR/$dest" >&2
}

unpack "$UPLOT" uplot dist/uPlot.iife.min.js dist/uPlot.min.css
unpack "$SWAGGER" swagger-ui swagger-ui-bundle.js swagger-ui.css favicon-32x32.png NOTICE
