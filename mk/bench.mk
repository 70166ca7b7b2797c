# Load benchmarks of the gRPC Check (docs/performance.md). Not part of
# `make test`: they take minutes and want a quiet machine.
#
#   make bench-check                                   langgate vs bench/noop, A B A B
#   make bench-check BENCH_CHECK_FLAGS='-rounds 5 -also before=/tmp/langgate-old'

BENCH_CHECK_FLAGS ?= -rounds 3 -duration 10s

.PHONY: bench-check
bench-check: build
	$(GO) run ./bench/checkload --langgate $(LANGGATE) $(BENCH_CHECK_FLAGS)

# The soak (docs/reliability.md): langgate behind the real Envoy for 10
# minutes at half of its maximum, a new user every few milliseconds; fails
# when RSS grows more than 10 % after the warm-up, a request fails or the
# goroutines climb. Samples and a plot land in .cache/soak/.
#
#   make soak
#   make soak SOAK_FLAGS='-duration 2m -users 20000'
SOAK_FLAGS ?= -duration 10m -users 100000

.PHONY: soak
soak: build envoy
	$(GO) run ./bench/soak --langgate $(LANGGATE) $(SOAK_FLAGS)

# The four figures of issue 30 (docs/performance.md#make-bench): memory per
# cached user, the tail at 100,000 users, throughput against bench/noop
# with the project's load generator and with ghz, and Envoy's share. About
# 12 minutes on the 2-core VM; the JSON and Envoy's perf summary stay in
# $(BENCH_DIR).
#
#   make bench
#   make bench BENCH_RUN='-rounds 5 -duration 10s'
BENCH_DIR ?= $(CACHE_DIR)/bench
BENCH_RUN ?= -rounds 3 -duration 5s
GHZ_VERSION := v0.120.0
GHZ := bin/ghz

.PHONY: bench ghz
bench: build envoy ghz
	mkdir -p $(BENCH_DIR)
	$(GO) run ./bench/checkload --langgate $(LANGGATE) $(BENCH_RUN) -users 200 -ghz $(GHZ) -json $(BENCH_DIR)/users-200.json
	$(GO) run ./bench/checkload --langgate $(LANGGATE) $(BENCH_RUN) -users 10000 -json $(BENCH_DIR)/users-10000.json
	$(GO) run ./bench/checkload --langgate $(LANGGATE) $(BENCH_RUN) -users 100000 -json $(BENCH_DIR)/users-100000.json
	$(GO) run ./bench/envoyoverhead --langgate $(LANGGATE) -rounds 2 -duration 5s -variants \
		-perf $(BENCH_DIR)/envoy-perf.txt -json $(BENCH_DIR)/envoy.json
	@echo
	@$(GO) run ./bench/table $(BENCH_DIR)

# ghz, the compiled gRPC load generator bench/checkload -ghz drives.
ghz: $(GHZ)
$(GHZ):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
