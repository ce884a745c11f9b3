# log-agent image: built in a pinned Rust image, run from Debian slim as a non-root user.
#   docker build -t log-agent:0.1.0 --build-arg LOG_AGENT_COMMIT="$(git rev-parse --short=12 HEAD)" .
# (the tag the manifests in deploy/kubernetes/ name; the commit shows in `log-agent --version`)
# `podman build` takes the same command. From a binary built on the host instead (Debian
# bookworm or older glibc; as Vector's release images do), the `prebuilt` target with a
# directory that holds only that binary, named log-agent, as the context:
#   mkdir -p target/image && strip --strip-debug -o target/image/log-agent target/release/log-agent
#   docker build -t log-agent:0.1.0 --target prebuilt -f Dockerfile target/image
# (.ci/pod builds it so, with no registry in reach; docs/development.md.)
# At run time nothing but the binary and its shared libraries is used (no shell: the entrypoint
# is exec form), and the only writable path is the data_dir, /var/lib/log-agent (mount a volume
# there; the pods in deploy/kubernetes/ run with a read-only root filesystem).

FROM rust:1.95.0-bookworm AS build
# librdkafka is built from source with SSL (OpenSSL) and SASL (Cyrus); same packages as .ci/deps.
# Debian's own security updates are wanted here, so versions are not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends pkg-config libssl-dev libsasl2-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The commit `--version` and the build_info metric show (there is no .git in the context).
ARG LOG_AGENT_COMMIT=unknown
# Only what the binary is built from (see .dockerignore); benches/ because Cargo.toml names them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY benches ./benches
COPY src ./src
# The release profile keeps line tables for profiling; the image drops them (83 -> 17 MB) and
# keeps the symbols, so a backtrace still names its functions.
RUN cargo build --release --locked --bin log-agent \
    && strip --strip-debug -o /usr/local/bin/log-agent target/release/log-agent

# What every image shares: the binary's libraries, its user, its data_dir, how it starts.
FROM debian:bookworm-slim AS runtime
# The runtime side of the build's libraries: libssl3 and libsasl2-2 (librdkafka links them
# dynamically; zlib is in the base), and CA certificates for TLS to brokers and HTTP endpoints.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 libsasl2-2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 log-agent \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin log-agent \
    && mkdir -p /var/lib/log-agent /etc/log-agent \
    && chown 10001:10001 /var/lib/log-agent
USER 10001:10001
# The HTTP API (/healthz /readyz /metrics) when api.address binds this port.
EXPOSE 8686
ENTRYPOINT ["/usr/local/bin/log-agent"]
CMD ["run", "--config", "/etc/log-agent/agent.yaml"]

# --target prebuilt: the binary is the context's log-agent (the build stage is not run).
FROM runtime AS prebuilt
COPY log-agent /usr/local/bin/log-agent

# The default target: the binary of the build stage.
FROM runtime
COPY --from=build /usr/local/bin/log-agent /usr/local/bin/log-agent
