# syntax=docker/dockerfile:1
# The tenant-mcp image: one static-enough binary on a minimal, non-root base. The chart runs it
# as `controller`, `mcp-server` and `migrate up`.
#
# Built outside this machine (it has no container runtime):
#   docker build -t registry.example.com/tenant-mcp:0.1.0 .
#   helm install tenant-mcp charts/tenant-mcp --set image.repository=registry.example.com/tenant-mcp
# tests/dockerfile.rs keeps this file consistent with Cargo.toml and the chart.

FROM rust:1.95-bookworm AS build
WORKDIR /src
# The whole workspace: --locked resolves every member's dependencies from Cargo.lock.
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tenant-mcp \
 && cp target/release/tenant-mcp /tenant-mcp

# glibc and libgcc only (TLS is rustls); uid 65532 as the chart's securityContext expects.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /tenant-mcp /usr/local/bin/tenant-mcp
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/tenant-mcp"]
