# langgate — build, run and test.
#
# `make run` starts langgate in dev mode (embedded OIDC issuer + the LangGraph
# example policy); `make test` installs what the tests need and runs them all.

GO        ?= go
BIN       := bin
LANGGATE  := $(BIN)/langgate
# Not GOFLAGS: the environment may set that (e.g. -buildvcs=false).
BUILDFLAGS ?= -trimpath
LDFLAGS   := -s -w
# Static build flags shared by `make build` and the container image (Dockerfile).
STATIC_ENV := CGO_ENABLED=0

.PHONY: all build run test test-go test-fuzz test-bench lint fmt vet tools clean

all: build

build:
	$(STATIC_ENV) $(GO) build $(BUILDFLAGS) -ldflags '$(LDFLAGS)' -o $(LANGGATE) ./cmd/langgate

run: build
	$(LANGGATE) serve --dev

# Everything `make test` needs, and the tests themselves. Fragments in mk/*.mk
# add their own prerequisites to TEST_DEPS and targets to TEST_TARGETS.
TEST_DEPS    :=
TEST_TARGETS := test-go test-fuzz test-bench
-include mk/*.mk

test: $(TEST_DEPS) vet $(TEST_TARGETS)

test-go:
	$(GO) test -race -count=1 ./...

# Every benchmark once: their correctness checks run (a benchmark that
# fails its check fails the build), so the figures in the docs cannot rot
# into measuring a broken path. Timings from one iteration mean nothing.
test-bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

# Short fuzzing passes over every parser, FUZZTIME each; `make test-fuzz
# FUZZTIME=10m` for a real session. The default is an execution count, not a
# duration: Go 1.26's coordinator can report a spurious "context deadline
# exceeded" when a duration expires under load (go.dev/issue/75804).
FUZZTIME ?= 50000x
FUZZ_TARGETS := ./pkg/config:FuzzParse ./pkg/routes:FuzzNormalize ./pkg/routes:FuzzBody ./pkg/routes:FuzzRPC ./pkg/authn:FuzzCredential ./pkg/authn:FuzzAuthenticate ./pkg/decision:FuzzDecide ./pkg/decision:FuzzBuild ./pkg/extauthz:FuzzDecodeCheck ./pkg/httpauthz:FuzzHTTPMode
test-fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Ten minutes per target (1.5 hours for all of them): not part of `make
# test`. A finding is written to the package's testdata/fuzz/<target>/;
# commit it with the fix, and every later `make test` replays it.
.PHONY: fuzz-long
fuzz-long:
	$(MAKE) test-fuzz FUZZTIME=10m

vet:
	@fmt_out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$fmt_out" ]; then echo "gofmt needed:"; echo "$$fmt_out"; exit 1; fi
	$(GO) vet ./...

GOLANGCI_VERSION := v2.15.0
lint: vet pydeps
	$(GO) run github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_VERSION) run ./...
	.cache/venv/bin/ruff check examples test
	.cache/venv/bin/ruff format --check examples test

clean:
	rm -rf $(BIN)
