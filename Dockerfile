# diun-dashboard container image.
#
#   docker build -t diun-dashboard .                                    full: SQLite or PostgreSQL,
#                                                                       chosen at run time by DATABASE_URL
#   docker build --build-arg FEATURES=sqlite -t diun-dashboard:sqlite .  slim, SQLite only
#   docker build -f Dockerfile.postgres -t diun-dashboard:postgres .     slim, PostgreSQL only
#
# The binary is linked statically against musl (the native target of the Alpine Rust image, so
# the cargo command line below is exactly the one `cargo xtask dist` runs and smoke-tests) and
# runs on distroless/static: no shell, no package manager, no libc, a non-root user.
# Keep the cargo command lines in step with `cargo_commands()` in xtask/src/docker.rs;
# `cargo xtask test` checks that they are.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS builder
# Cargo features of the binary: sqlite, postgres, or both (the default: backend picked at run time).
ARG FEATURES=sqlite,postgres
WORKDIR /build
# The C runtime's start files and headers: linking (and the bundled SQLite's C) needs them. Rust's
# Alpine images carry them only since December 2025, so an older RUST_VERSION failed to link
# ("cannot find crti.o"). The package follows the image's Alpine release, hence no version pin.
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev

# 1. Dependencies only. This layer is rebuilt when Cargo.toml or Cargo.lock change, not when the
#    source does. The stubs satisfy the manifest (it declares [lib], and xtask is a workspace
#    member that is never built here); afterwards every artefact of the package itself is
#    removed, since the real sources copied below can be older than the stubs and cargo compares
#    modification times.
COPY Cargo.toml Cargo.lock ./
COPY xtask/Cargo.toml xtask/Cargo.toml
RUN mkdir -p src xtask/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && echo 'fn main() {}' > build.rs \
 && echo 'fn main() {}' > xtask/src/main.rs \
 && cargo build --release --locked --no-default-features --features "$FEATURES" \
 && rm -rf src build.rs \
        target/release/.fingerprint/diun-dashboard-* \
        target/release/build/diun-dashboard-* \
        target/release/deps/diun_dashboard-* \
        target/release/deps/libdiun_dashboard-* \
        target/release/diun-dashboard* \
        target/release/libdiun_dashboard*

# 2. The application. migrations/ and assets/ are embedded into the binary at compile time.
COPY build.rs ./
COPY src src
COPY migrations migrations
COPY assets assets
RUN cargo build --release --locked --no-default-features --features "$FEATURES" \
 && readelf -d target/release/diun-dashboard > /tmp/dynamic-section \
 && if grep -q NEEDED /tmp/dynamic-section; then \
        echo "diun-dashboard is dynamically linked; distroless/static cannot run it" >&2; exit 1; \
    fi \
 && target/release/diun-dashboard --version \
 && mkdir -p /rootfs/data

# The run-time image: the binary and an empty /data owned by the unprivileged user.
FROM gcr.io/distroless/static-debian13:nonroot
ARG FEATURES=sqlite,postgres
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="diun-dashboard" \
      org.opencontainers.image.description="A persistent dashboard of the container image updates DIUN reports (features: ${FEATURES})" \
      org.opencontainers.image.source="https://github.com/diun-dashboard/diun-dashboard" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"

COPY --from=builder /build/target/release/diun-dashboard /usr/local/bin/diun-dashboard
# /rootfs holds the data directory itself, so --chown applies to it and not only to its contents.
COPY --from=builder --chown=65532:65532 /rootfs/ /

# distroless' "nonroot" user; numeric so that runtimes can verify it is not root.
USER 65532:65532
ENV PORT=8080 \
    BIND=0.0.0.0 \
    DB_PATH=/data/diun.db \
    RUST_LOG=info
VOLUME ["/data"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=7s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/diun-dashboard", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/diun-dashboard"]
