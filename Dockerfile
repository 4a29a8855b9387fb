# One image for every mode: `portcullis run` (standalone), `portcullis controller`
# and `portcullis proxy` (Kubernetes). Build from the repository root:
#   docker build -t portcullis:dev .
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p portcullis && cp target/release/portcullis /portcullis

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /portcullis /usr/local/bin/portcullis
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/portcullis"]
