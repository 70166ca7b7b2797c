# Load benchmarks of the gRPC Check (docs/performance.md). Not part of
# `make test`: they take minutes and want a quiet machine.
#
#   make bench-check                                   langgate vs bench/noop, A B A B
#   make bench-check BENCH_CHECK_FLAGS='-rounds 5 -also before=/tmp/langgate-old'

BENCH_CHECK_FLAGS ?= -rounds 3 -duration 10s

.PHONY: bench-check
bench-check: build
	$(GO) run ./bench/checkload --langgate $(LANGGATE) $(BENCH_CHECK_FLAGS)
