# End-to-end test prerequisites (test/e2e): the Node packages of the real
# LangGraph server and SDK, pinned by test/e2e/package-lock.json, and
# Debian's nginx for the auth_request proxy; the real Envoy comes from
# mk/python.mk. Included by the Makefile.
#
#   make e2e-deps    node-deps + nginx (a `make test` prerequisite)
#   make node-deps   npm ci in test/e2e, when the lock file changed
#   make demo        Envoy + langgate --dev + the LangGraph Python server,
#                    with curl, SDK and MCP commands to paste (owner
#                    isolation, store namespaces, MCP's protected resource
#                    and tools, A2A); SERVER=js for the JS server
#                    (examples/demo)
#   make test-differential
#                    the long run of the parser differential (every encoding
#                    of a name, value and order, through Envoy to both real
#                    servers); make test runs its bounded corpus

E2E_DIR := test/e2e

TEST_DEPS += e2e-deps

.PHONY: e2e-deps node-deps nginx demo test-differential

e2e-deps: node-deps nginx

nginx:
	@if ! command -v nginx >/dev/null 2>&1; then \
		echo "installing Debian's nginx-light (auth_request) for the end-to-end test"; \
		if [ "$$(id -u)" != 0 ]; then echo "nginx is missing and this is not root: apt-get install nginx-light"; exit 1; fi; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nginx-light >/dev/null; \
	fi

node-deps:
	@if [ ! -f $(E2E_DIR)/node_modules/.package-lock.json ] || [ $(E2E_DIR)/package-lock.json -nt $(E2E_DIR)/node_modules/.package-lock.json ]; then \
		echo "npm ci in $(E2E_DIR)"; \
		cd $(E2E_DIR) && npm ci --no-audit --no-fund --loglevel=error; \
	fi

SERVER ?= python

demo: build envoy node-deps
	$(GO) run ./examples/demo --langgate $(LANGGATE) --server $(SERVER)

test-differential: build envoy pydeps node-deps
	LANGGATE_DIFFERENTIAL_LONG=1 $(GO) test -count=1 -timeout 60m -run '^TestParserDifferential$$' -v ./test/e2e | grep -E 'variants;|adapter refused|^(---|ok|FAIL|PASS)'
