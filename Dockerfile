# Tollgate container image: built from source in a Rust stage, run from a distroless base (glibc,
# CA certificates, no shell) as the non-root user 65532, with nothing written outside the volumes
# (read-only root filesystem friendly). Build and run:
#
#   podman build -t tollgate .            # or: docker build -t tollgate .
#   podman run --read-only -p 8080:8080 -p 9090:9090 \
#       -v ./conf:/etc/tollgate:ro -v tollgate-state:/var/lib/tollgate tollgate
#
# The shipped conf/ (with the mock provider) answers at once; mount your own config for real use,
# and its secrets as files (${file:/run/secrets/…}) or environment variables.

FROM docker.io/library/rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY benches benches
RUN mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked --bin tollgate 2>/dev/null || true
COPY src src
COPY conf conf
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin tollgate \
    && install -D -m 0755 target/release/tollgate /out/usr/local/bin/tollgate \
    && mkdir -p /out/etc/tollgate /out/var/lib/tollgate /out/run/tollgate \
    && sed -e 's|127.0.0.1:9090|0.0.0.0:9090|' \
           -e 's|sqlite:data/|sqlite:/var/lib/tollgate/|' -e 's|spill_dir: data/|spill_dir: /var/lib/tollgate/|' \
           conf/tollgate.yaml > /out/etc/tollgate/tollgate.yaml

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /
COPY --from=build --chown=65532:65532 /out/var/lib/tollgate /var/lib/tollgate
COPY --from=build --chown=65532:65532 /out/run/tollgate /run/tollgate
USER 65532:65532
EXPOSE 8080 9090
VOLUME ["/var/lib/tollgate", "/run/tollgate"]
# No shell or curl in the image: the binary asks its own admin listener.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/tollgate", "health", "--url", "http://127.0.0.1:9090/health"]
ENTRYPOINT ["/usr/local/bin/tollgate"]
CMD ["run", "--config", "/etc/tollgate/tollgate.yaml", "--runtime-dir", "/run/tollgate"]
