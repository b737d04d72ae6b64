# syntax=docker/dockerfile:1
# One image for every service: `smb up` (all-in-one) or `smb serve <service>` (split).
#   docker build -t smb .            (or: podman build -t smb .)
# Build stage: the workspace's pinned toolchain (rust-toolchain.toml) on Debian bookworm.
FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source by rdkafka-sys (make, a C compiler, zlib).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential zlib1g-dev python3 \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p smb --bin smb \
 && install -D target/release/smb /out/smb
# Optional: bake the embedding model (search by meaning) into the image: --build-arg WITH_MODEL=1.
ARG WITH_MODEL=0
RUN mkdir -p /out/models && if [ "$WITH_MODEL" = 1 ]; then \
      HOME=/tmp /out/smb models install && cp -r /tmp/.cache/smb/models/. /out/models/; fi

# Runtime: glibc and CA certificates only, no shell, user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/smb /usr/local/bin/smb
COPY --from=build --chown=65532:65532 /out/models /home/nonroot/.cache/smb/models
ENV SMB_LOG=info
USER 65532:65532
WORKDIR /home/nonroot
EXPOSE 8080 50051 9090
ENTRYPOINT ["/usr/local/bin/smb"]
CMD ["up", "--addr", "0.0.0.0:8080", "--data-dir", "/data"]
