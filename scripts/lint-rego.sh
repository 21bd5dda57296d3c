#!/usr/bin/env bash
# Rego lint with the pinned toolchain: formatting, strict compile checks, Regal.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"
if [ ! -x "$bin/opa" ] || [ ! -x "$bin/regal" ]; then
  echo "lint-rego: the pinned OPA CLI and Regal are missing; run 'npm run tools'" >&2
  exit 1
fi
cd "$root"
echo "opa fmt --fail policies"
"$bin/opa" fmt --list --fail policies
echo "opa check --strict policies"
"$bin/opa" check --strict policies
echo "regal lint policies"
"$bin/regal" lint --format compact policies
