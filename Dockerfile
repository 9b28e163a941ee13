# syntax=docker/dockerfile:1
# dbr-ingest: `docker build -t dbr-ingest .`, then run it with the environment described in
# README.md (DATABASE_URL, DBR_BUCKET, DBR_MONITORED_ACCOUNTS, AWS_REGION, …).

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, in a layer of their own: changing the code does not rebuild them.
COPY Cargo.toml Cargo.lock ./
# The target processor (x86-64-v2 on x86_64; see README, "Development").
COPY .cargo ./.cargo
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/inflate.rs \
    && cargo build --release --locked --config profile.release.strip=true \
    && rm -rf src benches
COPY src ./src
COPY benches ./benches
COPY migrations ./migrations
# COPY keeps the files' old times: touch them so cargo rebuilds the crate itself.
# Stripped: the image carries a 19 MB binary instead of 134 MB of symbols and line tables
# (the profile keeps line tables for profiling a local build).
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --config profile.release.strip=true --bin dbr-ingest

FROM debian:bookworm-slim
# CA certificates for S3 over HTTPS; nothing else is needed at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin dbr
COPY --from=build /src/target/release/dbr-ingest /usr/local/bin/dbr-ingest
COPY config/default.toml /etc/dbr-ingest/default.toml
ENV DBR_CONFIG=/etc/dbr-ingest/default.toml
USER 10001
# /healthz, /readyz, /metrics; the status page listens on 127.0.0.1:9188 unless DBR_STATUS_ADDR
# says otherwise (it shows costs).
EXPOSE 9187
ENTRYPOINT ["dbr-ingest"]
CMD ["run"]
