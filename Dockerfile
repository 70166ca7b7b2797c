# syntax=docker/dockerfile:1
#
# langgate container image: a static binary on distroless, running as the
# unprivileged `nonroot` user (uid/gid 65532). No shell, no package manager,
# nothing to exec into. Build with `make image` (or docker buildx for several
# platforms); `make test` builds the same binary with the same flags and checks
# that it is statically linked, since the test machines have no Docker engine.

ARG GO_VERSION=1.26.8

# Build on the build machine's platform and cross-compile: no emulation.
FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
# Modules first, so that a source change does not refetch them.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
# The build flags are the ones of `make build` and of the `test-image-build`
# check in mk/deploy.mk: no cgo (a static binary that needs no libc), no local
# paths in the binary, no symbol table or DWARF.
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags '-s -w' -o /out/langgate ./cmd/langgate

# distroless/static: CA certificates (for the identity provider's HTTPS),
# tzdata and /etc/passwd with the nonroot user, and nothing else.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/langgate /usr/local/bin/langgate
USER 65532:65532
# 9001: ext_authz gRPC (Envoy Authorization/Check, gRPC health)
# 9090: admin HTTP (/healthz, /readyz, /metrics)
EXPOSE 9001 9090
ENTRYPOINT ["/usr/local/bin/langgate"]
CMD ["serve", "--config", "/etc/langgate/config/langgate.yaml"]
