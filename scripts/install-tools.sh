#!/usr/bin/env bash
# Installs the pinned OPA CLI and Regal into .tools/bin, building them from source with Go.
# Reuses binaries already there when their version matches the pin. Safe to run repeatedly.
set -euo pipefail

OPA_VERSION="v1.18.2"
REGAL_VERSION="v0.39.0"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/.tools/bin"
mkdir -p "$bin"

if ! command -v go >/dev/null 2>&1; then
  for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
    if [ -x "$candidate" ]; then PATH="$(dirname "$candidate"):$PATH"; break; fi
  done
fi
if ! command -v go >/dev/null 2>&1; then
  cat >&2 <<MSG
install-tools: Go is not installed, and the OPA CLI ($OPA_VERSION) and Regal ($REGAL_VERSION)
are built from source with it. Install Go 1.26 or newer (https://go.dev/doc/install, or your
package manager), make sure 'go' is on PATH, and run 'npm run tools' again.
MSG
  exit 1
fi

export GOFLAGS="-trimpath"

have_version() { # $1 binary, $2 expected version
  [ -x "$bin/$1" ] && [ -f "$bin/.$1.version" ] && [ "$(cat "$bin/.$1.version")" = "$2" ]
}

# OPA: the pinned release built with its Wasm engine (cgo + the opa_wasm tag, wasmtime from
# the Go module proxy), so `opa run` can activate the Wasm bundles the gateway builds and
# serves. A pure-Go build (CGO_ENABLED=0) refuses them with "engine not found".
install_opa() { # $1 version
  local stamp="$1+wasm"
  if have_version opa "$stamp"; then return 0; fi
  if ! command -v gcc >/dev/null 2>&1 && ! command -v cc >/dev/null 2>&1; then
    echo "install-tools: OPA's Wasm engine needs a C compiler (gcc); install it (e.g. apt-get install gcc) and retry" >&2
    exit 1
  fi
  echo "install-tools: building opa $1 with its Wasm engine from source (first run only; takes a few minutes)" >&2
  CGO_ENABLED=1 GOBIN="$bin" go install -tags opa_wasm "github.com/open-policy-agent/opa@$1"
  echo "$stamp" > "$bin/.opa.version"
}

# Regal: built inside a throwaway module that requires the pinned version. `go install m@v`
# also asks the proxy for the module's version list (a deprecation check), which some
# proxies refuse; resolving through go.mod needs only the pinned version itself.
install_in_module() { # $1 name, $2 module, $3 version
  if have_version "$1" "$3"; then return 0; fi
  echo "install-tools: building $1 $3 from source (first run only; takes a few minutes)" >&2
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  (cd "$work" && export CGO_ENABLED=0 && go mod init cynode-tools-build >/dev/null 2>&1 \
    && go get "$2@$3" 2>"$work/get.log" && go build -o "$bin/$1" "$2") \
    || { cat "$work/get.log" >&2; return 1; }
  echo "$3" > "$bin/.$1.version"
}

install_opa "$OPA_VERSION"
install_in_module regal github.com/open-policy-agent/regal "$REGAL_VERSION"
version="$("$bin/opa" version)"
echo "install-tools: opa ${version%%$'\n'*}, regal $(cat "$bin/.regal.version")" >&2
