#!/usr/bin/env bash
# Load test of the gRPC Check path with ghz, the numbers in docs/performance.md.
#
#   bench/ghz.sh [RPS ...]      (default: 1000 5000)
#
# Starts `langgate serve --dev` on loopback, mints a token from its dev
# issuer, and drives Authorization/Check at each fixed rate for DURATION
# (default 20s) with a cached token on GET /threads/{id} (owner filter).
# ghz is installed from the Go module proxy into bin/ when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
GHZ_VERSION=v0.120.0 # as mk/bench.mk
DURATION=${DURATION:-20s}
RATES=("${@:-1000 5000}")
[ -x bin/ghz ] || GOBIN="$PWD/bin" go install "github.com/bojand/ghz/cmd/ghz@$GHZ_VERSION"
make -s build
log=$(mktemp)
bin/langgate serve --dev --grpc-addr 127.0.0.1:19001 --admin-addr 127.0.0.1:19090 --log-level warn >"$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do grep -q "Mint a token" "$log" && break; sleep 0.1; done
issuer=$(sed -n "s|.*curl -s '\(http://[^/]*\)/token.*|\1|p" "$log")
token=$(curl -s "$issuer/token?sub=alice" | sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p')
data=$(printf '{"attributes":{"request":{"http":{"method":"GET","path":"/threads/1ef5c0de-1b2c-6d3e-8f90-123456789abc","headers":{"authorization":"Bearer %s",":authority":"lg.example","x-request-id":"bench"}}}}}' "$token")
for rps in ${RATES[@]}; do
	echo "== $rps req/s for $DURATION"
	bin/ghz --insecure --call envoy.service.auth.v3.Authorization/Check -d "$data" \
		--rps "$rps" -z "$DURATION" -c 50 --connections 4 127.0.0.1:19001 |
		grep -E "Count:|Average:|Requests/sec:|50 % in|90 % in|99 % in|99.9 % in|OK|Status code"
done
