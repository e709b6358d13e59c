# syntax=docker/dockerfile:1
# sealgate container image: docs/packaging.md.
#   docker build -t sealgate .
#   docker run -v /srv/sealgate/etc:/etc/sealgate:ro -v sealgate-data:/var/lib/sealgate \
#     -p 8080:8080 sealgate
# The config must listen on 0.0.0.0 (the default, 127.0.0.1, is unreachable from outside).

# --- build: the toolchain CI uses; aws-lc-sys builds its C with the image's gcc ---
ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
# --locked: exactly the dependency versions the tests ran with.
# Cache mounts keep the registry and target between builds (BuildKit);
# the binary is copied out because the cache mount is not part of the layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin sealgate \
    && install -m 0755 target/release/sealgate /usr/local/bin/sealgate \
    && /usr/local/bin/sealgate --version

# --- runtime: glibc, CA roots for https:// upstreams, the binary, nothing else ---
FROM debian:bookworm-slim
# ca-certificates: rustls-native-certs reads the system roots for https upstreams.
# Not pinned (DL3008): CA roots must follow Debian's security updates on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 sealgate \
    && useradd --system --uid 10001 --gid sealgate --home-dir /var/lib/sealgate \
       --shell /usr/sbin/nologin sealgate \
    && install -d -o sealgate -g sealgate -m 0700 /var/lib/sealgate \
    && install -d -m 0755 /etc/sealgate
COPY --from=builder /usr/local/bin/sealgate /usr/local/bin/sealgate
# numeric, so Kubernetes' runAsNonRoot can verify it without the image's passwd
USER 10001:10001
# key store (and admin socket) and the default relative data_dir land here
WORKDIR /var/lib/sealgate
VOLUME ["/var/lib/sealgate"]
# proxy, KMS faces, admin (/metrics, /healthz, /readyz)
EXPOSE 8080 8443 9090
ENTRYPOINT ["sealgate"]
CMD ["serve", "--config", "/etc/sealgate/sealgate.toml"]
