# syntax=docker/dockerfile:1
# The inflow image: `docker build -t REGISTRY/inflow:0.1.0 .` at the root of the
# repository. ENTRYPOINT is the binary, so a container's args are an inflow
# command line (`serve --role router ...`, as the Helm chart in helm/inflow sets).

# Build: the release binary. Bookworm, as the runtime image, so glibc matches.
FROM rust:1.95-slim-bookworm AS build
# The slim image has gcc but not make, which jemalloc's build (tikv-jemalloc-sys)
# runs. Pinned to bookworm's version, as hadolint asks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make=4.3-4.1 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target/ between builds; the binary is
# copied out of target/ within the same step, as the cache is not in the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin inflow \
    && install -D -m 0755 target/release/inflow /out/inflow \
    && install -d /out/data

# Runtime: glibc, libgcc and CA certificates (S3 over TLS) and nothing else; no
# shell. Runs as the image's unprivileged user 65532, which the chart's
# securityContext names too.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/inflow /usr/local/bin/inflow
# The default data directory, writable by that user when no volume is mounted.
COPY --from=build --chown=65532:65532 /out/data /var/lib/inflow
USER 65532:65532
WORKDIR /var/lib/inflow
# HTTP and gRPC (every role); an ingester's Flight port.
EXPOSE 8086 8087
ENTRYPOINT ["/usr/local/bin/inflow"]
CMD ["serve", "--data-dir", "/var/lib/inflow"]
