# Deployment artifacts: the Helm chart's tool, the container image and its
# build check. Included by the top-level Makefile.
#
#   make helm              install the pinned helm into bin/ (a `make test` prerequisite)
#   make test-image-build  build the image's binary the way the Dockerfile does, check it is static
#   make image             docker build the image (needs a Docker engine)

# helm, built from the Go module proxy (no binary download). The chart tests
# (test/chart) run bin/helm, or $HELM when set.
HELM_VERSION   := v3.22.0
# Kubernetes minor version of the k8s.io modules helm $(HELM_VERSION) is built
# with: helm's release builds stamp it, and `helm template` defaults to it.
HELM_K8S_MINOR := 37
HELM_BIN       := $(CURDIR)/$(BIN)/helm
HELM_LDFLAGS   := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)

# The image's build command, as written in the Dockerfile's build stage.
IMAGE_BUILD_CMD := go build -trimpath -ldflags '$(LDFLAGS)'

IMAGE     ?= ghcr.io/langgate/langgate
IMAGE_TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
DOCKER    ?= docker

TEST_DEPS    += helm
TEST_TARGETS += test-image-build

.PHONY: helm test-image-build image

# Installs helm only when bin/helm is missing or is another version.
helm:
	@if $(GO) version -m $(HELM_BIN) 2>/dev/null | grep -Eq '^[[:space:]]+mod[[:space:]]+helm\.sh/helm/v3[[:space:]]+$(HELM_VERSION)[[:space:]]'; then \
		echo "helm $(HELM_VERSION) already in $(BIN)/"; \
	else \
		echo "installing helm $(HELM_VERSION) into $(BIN)/ (go install, from the Go module proxy)"; \
		GOBIN=$(CURDIR)/$(BIN) $(GO) install -trimpath -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); \
	fi

# There is no Docker engine on the test machines, so this checks the image's
# build stage without one:
#  1. the Dockerfile still builds with CGO_ENABLED=0 and $(IMAGE_BUILD_CMD);
#  2. the build context Docker would send (the repository's files minus
#     .dockerignore) is copied to a temporary directory, and the binary is
#     built there with those flags: a .dockerignore that drops a needed file
#     fails here;
#  3. the binary is statically linked (no ELF interpreter, no shared
#     libraries), stripped (-s -w) and built with CGO_ENABLED=0 -trimpath.
test-image-build:
	@grep -Fq 'CGO_ENABLED=0' Dockerfile && grep -Fq -- "$(IMAGE_BUILD_CMD) -o /out/langgate ./cmd/langgate" Dockerfile \
		|| { echo "Dockerfile: the build stage must run CGO_ENABLED=0 $(IMAGE_BUILD_CMD) -o /out/langgate ./cmd/langgate"; exit 1; }
	@if grep -Eq '^[[:space:]]*[!]|[?[]' .dockerignore; then \
		echo ".dockerignore: !, ? and [ ] patterns are not understood by test-image-build; extend mk/deploy.mk"; exit 1; fi
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	grep -Ev '^[[:space:]]*(#|$$)' .dockerignore \
		| sed -e 's|^/||' -e 's|/$$||' -e 's|\.|\\.|g' -e 's|\*\*/|@@|g' -e 's|\*|[^/]*|g' -e 's|@@|(.*/)?|g' -e 's|^|^|' -e 's|$$|(/\|$$)|' \
		> "$$tmp/ignore.re"; \
	mkdir "$$tmp/context"; \
	git ls-files -z --cached --others --exclude-standard --deduplicate \
		| grep -zvE -f "$$tmp/ignore.re" \
		| tar --null --ignore-failed-read -T - -cf - 2>/dev/null | tar -xf - -C "$$tmp/context"; \
	test -f "$$tmp/context/go.mod" || { echo "the build context lacks go.mod"; exit 1; }; \
	echo "building ./cmd/langgate from the Docker build context ($$(find "$$tmp/context" -type f | wc -l) files): CGO_ENABLED=0 $(IMAGE_BUILD_CMD)"; \
	(cd "$$tmp/context" && CGO_ENABLED=0 $(IMAGE_BUILD_CMD) -o "$$tmp/langgate" ./cmd/langgate); \
	settings=$$($(GO) version -m "$$tmp/langgate"); \
	for want in 'CGO_ENABLED=0' '-trimpath=true'; do \
		printf '%s\n' "$$settings" | grep -Fq -- "$$(printf 'build\t')$$want" || { echo "binary lacks build setting $$want"; exit 1; }; \
	done; \
	if command -v readelf >/dev/null; then \
		if readelf -lW "$$tmp/langgate" | grep -q 'INTERP'; then echo "binary has an ELF interpreter: not static"; exit 1; fi; \
		if readelf -dW "$$tmp/langgate" | grep -q 'NEEDED'; then echo "binary needs shared libraries: not static"; exit 1; fi; \
		if readelf -SW "$$tmp/langgate" | grep -Eq '\.symtab|\.debug_'; then echo "binary has a symbol table or DWARF: -s -w not applied"; exit 1; fi; \
		echo "ok: static, stripped binary, $$(du -h "$$tmp/langgate" | cut -f1) (readelf: no interpreter, no shared libraries, no symbols)"; \
	elif command -v file >/dev/null; then \
		file "$$tmp/langgate" | grep 'statically linked' | grep -q ', stripped' || { file "$$tmp/langgate"; echo "not static and stripped"; exit 1; }; \
		echo "ok: static, stripped binary (file)"; \
	else \
		echo "readelf (binutils) or file is needed to check the binary is static"; exit 1; \
	fi

# Builds the image with the local Docker engine (or DOCKER=podman). For
# several platforms: docker buildx build --platform linux/amd64,linux/arm64 .
image:
	$(DOCKER) build --pull -t $(IMAGE):$(IMAGE_TAG) .

# egctl, Envoy Gateway's CLI, built from the Go module proxy at the release
# go.mod pins for the Go types test/chart decodes into. test/e2e runs its
# translator (egctl x translate) on the chart's SecurityPolicy and loads the
# result into the real Envoy. bin/egctl, or $EGCTL when set.
EGCTL_VERSION := $(shell sed -n 's|^[[:space:]]*github.com/envoyproxy/gateway \(v[^ ]*\).*|\1|p' go.mod)
EGCTL_BIN     := $(CURDIR)/$(BIN)/egctl
TEST_DEPS     += egctl
.PHONY: egctl
egctl:
	@if $(GO) version -m $(EGCTL_BIN) 2>/dev/null | grep -Eq '^[[:space:]]+mod[[:space:]]+github\.com/envoyproxy/gateway[[:space:]]+$(EGCTL_VERSION)[[:space:]]'; then \
		echo "egctl $(EGCTL_VERSION) already in $(BIN)/"; \
	else \
		echo "installing egctl $(EGCTL_VERSION) into $(BIN)/ (go install, from the Go module proxy)"; \
		GOBIN=$(CURDIR)/$(BIN) $(GO) install -trimpath -ldflags '-s -w' github.com/envoyproxy/gateway/cmd/egctl@$(EGCTL_VERSION); \
	fi
