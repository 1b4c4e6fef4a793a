# k3s-scale's container image: built in a pinned Rust image, run in a small Debian image.
# Build from the repository root: `docker build -t k3s-scale:local .`
# (or `docker compose -f compose/docker-compose.yml build k3s-scale`).
#
# The runtime is Debian 12 slim, not scratch or distroless: the compose stack runs
# k3s-scale from a shell loop (k3s-scale-loop: sh, sed, sleep), and the binary is linked
# against glibc, which the builder (Debian bookworm) and the runtime share.

ARG RUST_IMAGE=rust:1.89.0-slim-bookworm
ARG RUNTIME_IMAGE=debian:12.11-slim

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# Manifests first, with stub sources, so the dependency layer is cached across code edits.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src benches && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && echo 'fn main() {}' > benches/scale.rs \
    && cargo build --release --locked \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
# Touch so cargo rebuilds the crate itself over the stub build above.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && mkdir -p /out && cp target/release/k3s-scale /out/k3s-scale

FROM ${RUNTIME_IMAGE} AS runtime
# CA roots for an https:// Prometheus or API server signed by a public CA.
COPY --from=builder /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /out/k3s-scale /usr/local/bin/k3s-scale
COPY compose/k3s-scale/k3s-scale-loop /usr/local/bin/k3s-scale-loop
# Root: the Docker socket (mounted by compose) is root-only unless the docker group's GID
# is matched, and Docker-socket access is root-equivalent on the host anyway.
USER 0
ENTRYPOINT []
CMD ["k3s-scale-loop"]
