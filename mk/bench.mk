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
