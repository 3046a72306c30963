# The operator's image, in kubebuilder's shape: a static manager binary on
# distroless/static, run as the nonroot user.
#   docker build -t ghcr.io/usersync/usersync-operator:dev \
#     --build-arg VERSION="$(git describe --tags --always --dirty)" \
#     --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker buildx build --platform linux/amd64,linux/arm64 -t ... --push .
# Without Docker, `make image` builds the same image (hack/image).
FROM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH

WORKDIR /workspace
# The module files first, so that the module download is cached while only
# the sources change.
COPY go.mod go.mod
COPY go.sum go.sum
RUN go mod download

COPY main.go main.go
COPY api/ api/
COPY internal/ internal/

# CGO_ENABLED=0: a static binary, for distroless/static. GOARCH empty (a
# plain `docker build`) means the builder's own architecture.
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -a -trimpath -ldflags "-s -w" -o manager .

# distroless/static: CA certificates, tzdata, /tmp, and the nonroot user.
FROM gcr.io/distroless/static:nonroot
ARG VERSION=dev
ARG REVISION=unknown
ARG CREATED
LABEL org.opencontainers.image.source="https://github.com/usersync/usersync-operator" \
      org.opencontainers.image.title="usersync-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}"
WORKDIR /
COPY --from=builder /workspace/manager .
USER 65532:65532

ENTRYPOINT ["/manager"]
