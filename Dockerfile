# log-agent image: built in a pinned Rust image, run from Debian slim as a non-root user.
#   docker build -t log-agent:0.1.0 --build-arg LOG_AGENT_COMMIT="$(git rev-parse --short=12 HEAD)" .
# (the tag the manifests in deploy/kubernetes/ name; the commit shows in `log-agent --version`)
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
RUN cargo build --release --locked --bin log-agent \
    && cp target/release/log-agent /usr/local/bin/log-agent

FROM debian:bookworm-slim
# The runtime side of the build's libraries: libssl3 and libsasl2-2 (librdkafka links them
# dynamically), and CA certificates for TLS to brokers and HTTP endpoints.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libssl3 libsasl2-2 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 log-agent \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin log-agent \
    && mkdir -p /var/lib/log-agent /etc/log-agent \
    && chown 10001:10001 /var/lib/log-agent
COPY --from=build /usr/local/bin/log-agent /usr/local/bin/log-agent
USER 10001:10001
# The HTTP API (/healthz /readyz /metrics) when api.address binds this port.
EXPOSE 8686
ENTRYPOINT ["/usr/local/bin/log-agent"]
CMD ["run", "--config", "/etc/log-agent/agent.yaml"]
