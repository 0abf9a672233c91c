# syntax=docker/dockerfile:1
#
# Sessionflow's image: the worker and the starter CLI in one distroless,
# non-root image. The worker is the entrypoint; run the CLI with
#   docker run --entrypoint /usr/local/bin/starter sessionflow:dev --help
#
#   docker build -t sessionflow:dev .

FROM golang:1.26 AS build
WORKDIR /src
# Modules first, so that a source change does not download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# Pure Go (no cgo): the binaries run on a static base image.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/ ./worker ./starter

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/worker /out/starter /usr/local/bin/
# A default pipelines file; deployments mount their own over it.
COPY deploy/pipelines.yaml /etc/sessionflow/pipelines.yaml
# nonroot is uid/gid 65532 in the distroless images.
USER 65532:65532
# Prometheus metrics, /healthz and /readyz (--metrics-addr).
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/worker"]
