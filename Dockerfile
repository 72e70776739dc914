# syntax=docker/dockerfile:1
#
# Phoenix: one binary, `phoenix` (server, agent and CLI).
#   docker build -t phoenix:local .
#   docker run --rm -p 8080:8080 phoenix:local            # embedded mode: SQLite + in-process bus
# docker-compose.yml runs it against PostgreSQL and NATS.

############################ build ############################
FROM rust:1.95-bookworm AS builder

# The -sys crates build C from source: vendored OpenSSL (perl, make), bundled
# libpq and SQLite (a C compiler, which the rust image has). cmake and
# pkg-config cover crates that look for them.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake perl make pkg-config \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# 1. Dependencies only. Copy the manifests, stub the workspace's sources and
#    build: this layer, the slow one (OpenSSL alone takes minutes), is reused
#    until Cargo.toml or Cargo.lock change. It is only a cache: if the stubs do
#    not build (say a build script appears), step 2 builds everything anyway.
COPY Cargo.toml Cargo.lock ./
COPY actors/Cargo.toml actors/Cargo.toml
COPY nats/Cargo.toml nats/Cargo.toml
COPY pipeline/Cargo.toml pipeline/Cargo.toml
RUN mkdir -p src actors/src nats/src pipeline/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs actors/src/lib.rs nats/src/lib.rs pipeline/src/lib.rs \
 && (cargo build --release --locked --bin phoenix \
     || echo "dependency pre-build failed; the full build below will redo it") \
 && rm -rf src actors/src nats/src pipeline/src

# 2. The real sources. Touch them so cargo never mistakes the stub builds of
#    the workspace crates for up-to-date ones (copied files keep old mtimes).
COPY . .
RUN find src actors nats pipeline -name '*.rs' -exec touch {} + \
 && cargo build --release --locked --bin phoenix \
 && install -m 0755 target/release/phoenix /usr/local/bin/phoenix

############################ runtime ############################
FROM debian:bookworm-slim

# The binary links only libc/libm/libgcc_s (SQLite, libpq and OpenSSL are
# built in). ca-certificates for TLS to NATS/PostgreSQL, curl for health checks.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system phoenix \
 && useradd --system --gid phoenix --home-dir /var/lib/phoenix --shell /usr/sbin/nologin phoenix \
 && mkdir -p /var/lib/phoenix /var/lib/phoenix-agent \
 && chown phoenix:phoenix /var/lib/phoenix /var/lib/phoenix-agent

COPY --from=builder /usr/local/bin/phoenix /usr/local/bin/phoenix

USER phoenix
# State: the embedded SQLite database (./phoenix.db) and an agent's credential.
WORKDIR /var/lib/phoenix
VOLUME ["/var/lib/phoenix"]

EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/phoenix"]
CMD ["server", "--listen", "0.0.0.0:8080"]
