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
