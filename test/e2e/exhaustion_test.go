package e2e

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/langgate/langgate/bench/proc"
	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/extauthz"
	"github.com/langgate/langgate/test/h2flood"
)

// The exhaustion suite (issue 29): attacks on the real binary, each run
// while a legitimate client (alice, reading a thread) keeps sending
// requests. Each case asserts that langgate's RSS, descriptors and
// goroutines stay bounded, that what the attack held is released within
// the configured timeout, and that the legitimate client is served
// throughout; its p99 during the attack is logged beside its p99 without
// one, on a line starting "FIGURE" (docs/reliability.md quotes them).
//
// The attackers never present a credential that verifies: they are
// anonymous, or forge tokens.

// threadPath is the thread alice reads.
const threadPath = "/threads/1ef5c0de-1b2c-6d3e-8f90-123456789abc"

// legitResult is what the legitimate client saw.
type legitResult struct {
	p99       time.Duration
	failed, n int
	errs      map[string]int
}

// legitClient sends requests one after the other, 5 ms apart, for d.
type legitClient func(d time.Duration) legitResult

// hostile is one attack.
type hostile struct {
	name string
	// launch sets the attack going and returns once it is in place (its
	// connections open, its streams declared); stop ends it.
	launch func(t *testing.T) (stop func())
	// window is how long the legitimate client runs beside the attack.
	window time.Duration
	// growth is the RSS growth allowed over what langgate held before.
	growth int64
	// released reports that langgate holds nothing of the attack any more,
	// within (of launch's return, or for a flood of its end) at most.
	released func(start, now procUsage) bool
	within   time.Duration
	// flood: the attack runs until the legitimate client's window ends.
	flood bool
	// check makes the case's own assertions, given what langgate held
	// before, at its peak during the attack, and after.
	check func(t *testing.T, start, peak, after procUsage)
}

// underAttack runs each attack against lg (whose process is pid) beside
// client.
func underAttack(t *testing.T, lg *langgate, client legitClient, attacks []hostile) {
	base := client(2 * time.Second)
	if base.failed > 0 {
		t.Fatalf("the legitimate client failed %d of %d requests before any attack: %v", base.failed, base.n, base.errs)
	}
	pid := lg.cmd.Process.Pid
	t.Logf("before the attacks: %s; the legitimate client's p99 %v over %d requests", usage(t, pid, lg.admin), base.p99, base.n)
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			start := usage(t, pid, lg.admin)
			res := make(chan legitResult, 1)
			var peak procUsage
			var peakMu sync.Mutex
			sampling := make(chan struct{})
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for {
					u := usage(t, pid, lg.admin)
					peakMu.Lock()
					peak = peak.max(u)
					peakMu.Unlock()
					select {
					case <-sampling:
						return
					case <-time.After(100 * time.Millisecond):
					}
				}
			}()
			go func() { res <- client(a.window) }()
			stop := a.launch(t)
			// When langgate let go of what the attack held: counted from
			// when the attack was in place, or for a flood (which holds
			// nothing once it stops) from its end.
			watch := func(from time.Time) chan time.Duration {
				ch := make(chan time.Duration, 1)
				go func() {
					for time.Since(from) < a.within+10*time.Second {
						if a.released(start, usage(t, pid, lg.admin)) {
							ch <- time.Since(from)
							return
						}
						time.Sleep(50 * time.Millisecond)
					}
					ch <- -1
				}()
				return ch
			}
			var releasedCh chan time.Duration
			if !a.flood {
				releasedCh = watch(time.Now())
			}
			r := <-res
			if a.flood {
				stop()
				releasedCh = watch(time.Now())
			}
			releasedIn := <-releasedCh
			close(sampling)
			<-sampled
			if !a.flood {
				stop()
			}
			after := usage(t, pid, lg.admin)
			t.Logf("FIGURE %s | before %s | peak %s | after %s | released %v after the attack was in place or, for a flood, ended (timeout %v) | legitimate p99 %v over %d requests, %d failed (%v without the attack)",
				a.name, start, peak, after, releasedIn.Round(10*time.Millisecond), a.within, r.p99, r.n, r.failed, base.p99)
			if r.failed > 0 {
				t.Errorf("the legitimate client failed %d of %d requests during the attack: %v", r.failed, r.n, r.errs)
			}
			if grow := peak.rss - start.rss; grow > a.growth {
				t.Errorf("RSS grew by %.1f MiB during the attack, over %.0f MiB", float64(grow)/(1<<20), float64(a.growth)/(1<<20))
			}
			if releasedIn < 0 || releasedIn > a.within+time.Second {
				t.Errorf("what the attack held was not released within %v (+1 s) of its start: %s", a.within, after)
			}
			if a.check != nil {
				a.check(t, start, peak, after)
			}
		})
	}
}

// TestHTTPModeUnderHostileLoad runs the HTTP mode's attacks:
//
//   - 200 anonymous connections each declare a 1 MiB body, send all but
//     its last byte, and stall (langgate authenticates before it reads a
//     body, and reads one only on a route whose rules need it: each is
//     answered 401 and closed);
//   - 3,000 anonymous keep-alive connections send one request each and
//     then stay idle (closed after --http-idle-timeout; over
//     --http-max-conns a waiting one makes room for a new one);
//   - 300 connections each send 60 KiB of header lines and stall before
//     the blank line that ends them (cut at the header timeout);
//   - 8 connections send forged tokens, each distinct (the issuer's kid,
//     a random signature: every one costs a signature check), as fast as
//     langgate answers;
//   - 8 connections send tokens that each name a kid of their own (the
//     key set is refetched for an unknown kid at most once per
//     unknown_kid_refetch_interval, and the kids looked for are bounded).
func TestHTTPModeUnderHostileLoad(t *testing.T) {
	// Shorter timeouts than the defaults (10 s read, 30 s idle), for a
	// short test, and a connection cap of 512 (the default, 8,192, is
	// sized for a proxy's burst of checks in flight).
	const idle, maxConns = 3 * time.Second, 512
	lg := startLanggateWith(t, "../../examples/langgraph/langgate.yaml", nil,
		"--http-idle-timeout", idle.String(), "--http-read-timeout", idle.String(), "--http-max-conns", strconv.Itoa(maxConns))
	alice := token(t, "alice")
	target := "http://" + lg.http + "/envoy" + threadPath
	client := func(d time.Duration) legitResult {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		defer c.CloseIdleConnections()
		return repeat(d, func() error {
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "Bearer "+alice)
			resp, err := c.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				return fmt.Errorf("status %d", resp.StatusCode)
			}
			return nil
		})
	}
	connsClosed := func(start, now procUsage) bool { return now.fds <= start.fds+8 }
	bounded := func(t *testing.T, start, peak, _ procUsage) {
		if peak.fds > start.fds+maxConns+16 || peak.goroutines > start.goroutines+2*maxConns {
			t.Errorf("at the peak: %s, beyond the cap of %d connections", peak, maxConns)
		}
	}
	dialEach := func(t *testing.T, n int, run func(c net.Conn)) func() {
		var conns []net.Conn
		var wg sync.WaitGroup
		for range n {
			c, err := net.DialTimeout("tcp", lg.http, 5*time.Second)
			if err != nil {
				t.Errorf("dial: %v", err)
				break
			}
			conns = append(conns, c)
			wg.Add(1)
			go func() { defer wg.Done(); run(c) }()
		}
		return func() {
			for _, c := range conns {
				_ = c.Close()
			}
			wg.Wait()
		}
	}
	attacker := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	forgedRound := func(forge func(i int) string) func(t *testing.T) func() {
		return func(t *testing.T) func() {
			return flood(8, func(i int) error {
				req, _ := http.NewRequest("GET", target, nil)
				req.Header.Set("Authorization", "Bearer "+forge(i))
				return expectStatus(attacker, req, 401)
			})
		}
	}
	var jwksBefore float64
	underAttack(t, lg, client, []hostile{
		{name: "stalled 1 MiB bodies", window: idle + 2*time.Second, growth: 32 << 20, released: connsClosed, within: idle, check: bounded,
			launch: func(t *testing.T) func() {
				return dialEach(t, 200, func(c net.Conn) {
					fmt.Fprintf(c, "POST /envoy/store/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1<<20)
					_, _ = c.Write(make([]byte, 1<<20-1))
				})
			}},
		{name: "idle keep-alive connections", window: idle + 2*time.Second, growth: 32 << 20, released: connsClosed, within: idle, check: bounded,
			launch: func(t *testing.T) func() {
				return dialEach(t, 3000, func(c net.Conn) {
					_, _ = io.WriteString(c, "GET /envoy/threads HTTP/1.1\r\nHost: x\r\n\r\n")
					if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
					}
				})
			}},
		{name: "stalled 60 KiB headers", window: idle + 2*time.Second, growth: 32 << 20, released: connsClosed, within: idle, check: bounded,
			launch: func(t *testing.T) func() {
				line := "X-Pad: " + strings.Repeat("a", 1000) + "\r\n"
				return dialEach(t, 300, func(c net.Conn) {
					_, _ = io.WriteString(c, "GET /envoy/threads HTTP/1.1\r\nHost: x\r\n"+strings.Repeat(line, 60))
				})
			}},
		{name: "forged tokens, each distinct", window: 3 * time.Second, growth: 32 << 20, within: time.Second, flood: true,
			released: func(start, now procUsage) bool { return now.goroutines <= start.goroutines+8 },
			launch:   forgedRound(forger(t, alice, false)),
			check: func(t *testing.T, start, _, after procUsage) {
				if after.cached > start.cached {
					t.Errorf("forged tokens were cached: %d users cached, %d before", after.cached, start.cached)
				}
			}},
		{name: "a new kid in every token", window: 3 * time.Second, growth: 32 << 20, within: time.Second, flood: true,
			released: func(start, now procUsage) bool { return now.goroutines <= start.goroutines+8 },
			launch: func(t *testing.T) func() {
				jwksBefore = metricSum(t, lg.admin, "langgate_jwks_fetches_total")
				return forgedRound(forger(t, alice, true))(t)
			},
			check: func(t *testing.T, _, _, _ procUsage) {
				// One refetch at most per 10 s interval (unknown_kid_refetch_interval's
				// default) and a scheduled refresh.
				if n := metricSum(t, lg.admin, "langgate_jwks_fetches_total") - jwksBefore; n > 2 {
					t.Errorf("%v key set fetches during the attack, want at most 2", n)
				}
			}},
	})
}

// TestGRPCUnderHostileLoad runs the gRPC port's attacks, beside a
// legitimate client sending Checks as Envoy does:
//
//   - 4 connections open 1,024 Check streams each (4,096), declare a
//     2 MiB − 1 message on each, send 16 KiB of it and stall. Over
//     --grpc-max-streams, each new stream ends the one that has waited
//     longest for its message; the rest are ended at
//     --grpc-check-timeout.
//   - 1 connection opens 4,096 streams and sends all but the last byte
//     of a 2 MiB − 1 message on each, as fast as flow control lets it
//     (and dials again when langgate closes it). A stream's window stays
//     at 64 KiB until its Check takes one of the receive slots (16, which
//     stretch to 64 while every holder is slow), so the messages being
//     read hold at most 64 × 2 MiB.
func TestGRPCUnderHostileLoad(t *testing.T) {
	const maxStreams, timeout, memLimit = 1024, 3 * time.Second, 256 << 20
	lg := startLanggateWith(t, "../../examples/langgraph/langgate.yaml", nil,
		"--grpc-max-streams", strconv.Itoa(maxStreams), "--grpc-check-timeout", timeout.String(), "--memory-limit", fmt.Sprintf("%dMiB", memLimit>>20))
	client := grpcClient(t, lg, token(t, "alice"))
	drained := func(_, now procUsage) bool { return now.checks == 0 }
	// streams: conns connections, each opening each streams that declare
	// a 2 MiB − 1 message and send send bytes of it. A connection langgate
	// closes is dialled again, and goes on with the streams it had left.
	streams := func(conns, each, send int) func(t *testing.T) func() {
		return func(t *testing.T) func() {
			var mu sync.Mutex
			var cs []*h2flood.Conn
			var wg sync.WaitGroup
			deadline := time.Now().Add(3 * time.Second)
			for range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for left := each; left > 0 && time.Now().Before(deadline); {
						c, err := h2flood.Dial(lg.grpc)
						if err != nil {
							t.Errorf("dial: %v", err)
							return
						}
						mu.Lock()
						cs = append(cs, c)
						mu.Unlock()
						err = c.Flood(left, 2<<20-1, send, 2*time.Second)
						left -= c.Result().Opened
						if err == nil {
							return
						}
					}
				}()
			}
			wg.Wait()
			return func() {
				st := map[string]int{}
				closed := 0
				mu.Lock()
				defer mu.Unlock()
				for _, c := range cs {
					r := c.Result()
					for k, v := range r.Statuses {
						st[k] += v
					}
					if r.Closed {
						closed++
					}
					_ = c.Close()
				}
				t.Logf("the attacker's streams ended with %v (grpc-status, or RST); %d of its %d connections were closed by langgate", st, closed, len(cs))
			}
		}
	}
	underAttack(t, lg, client, []hostile{
		// Each Check admitted holds its stream's goroutine and buffers
		// while its message arrives, about 64 KiB, and what was sent.
		{name: "4,096 trickled 2 MiB messages", window: timeout + 2*time.Second, growth: maxStreams * (64 + 16) << 10, released: drained, within: timeout,
			launch: streams(4, 1024, 16<<10),
			check: func(t *testing.T, _, peak, _ procUsage) {
				if peak.checks > maxStreams {
					t.Errorf("%d Checks in flight at the peak, over --grpc-max-streams %d", peak.checks, maxStreams)
				}
			}},
		// At most 4 × 16 Checks read their message at once (2 MiB each),
		// the others' streams hold their 64 KiB window: 192 MiB live at
		// most. What RSS adds to it is garbage the collector has not yet
		// reclaimed, which the memory limit bounds.
		{name: "4,096 filled 2 MiB messages", window: 4 * time.Second, growth: memLimit,
			released: drained, within: timeout, launch: streams(1, 4096, 2<<20-2),
			check: func(t *testing.T, _, peak, _ procUsage) {
				if peak.rss > memLimit+16<<20 {
					t.Errorf("peak RSS %.0f MiB, over the %d MiB memory limit and 16 MiB", float64(peak.rss)/(1<<20), memLimit>>20)
				}
				if live := int64(4*extauthz.DefaultMaxReceiving*2<<20 + maxStreams*extauthz.StreamWindow); live+64<<20 > memLimit {
					t.Fatalf("the test's memory limit is below what the streams may hold (%d MiB)", live>>20)
				}
			}},
	})
}

// TestEnvoyFrontUnderHostileLoad: with the real Envoy in front (gRPC
// mode), 200 anonymous connections to Envoy each declare a 1 MiB body on
// the store route (whose rules read it), send all but its last byte and
// stall. Envoy buffers a body for ext_authz before it calls langgate, so
// langgate sees none of them; Envoy's own memory holds them (its RSS is
// logged: bound it with Envoy's overload manager and its timeouts).
func TestEnvoyFrontUnderHostileLoad(t *testing.T) {
	lg := startLanggate(t, "../../examples/langgraph/langgate.yaml")
	e := envoyTo(t, "front-proxy.yaml", lg, startSink(t).addr, relaxed)
	alice := token(t, "alice")
	front := e.Listener("langgraph_http")
	target := e.URL("langgraph_http") + threadPath
	client := func(d time.Duration) legitResult {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		defer c.CloseIdleConnections()
		return repeat(d, func() error {
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "Bearer "+alice)
			return expectStatus(c, req, 200)
		})
	}
	var envoyRSS int64
	underAttack(t, lg, client, []hostile{
		{name: "stalled 1 MiB bodies through Envoy", window: 3 * time.Second, growth: 32 << 20, within: time.Second,
			released: func(_, now procUsage) bool { return now.checks == 0 },
			launch: func(t *testing.T) func() {
				var conns []net.Conn
				for range 200 {
					c, err := net.DialTimeout("tcp", front, 5*time.Second)
					if err != nil {
						t.Fatal(err)
					}
					conns = append(conns, c)
					fmt.Fprintf(c, "PUT /store/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", alice, 1<<20)
					_, _ = c.Write(make([]byte, 1<<20-1))
				}
				time.Sleep(500 * time.Millisecond)
				envoyRSS = proc.RSS(e.Pid())
				return func() {
					for _, c := range conns {
						_ = c.Close()
					}
				}
			},
			check: func(t *testing.T, start, peak, _ procUsage) {
				t.Logf("Envoy's RSS with the stalled bodies: %.0f MiB", float64(envoyRSS)/(1<<20))
				if peak.fds > start.fds+16 {
					t.Errorf("langgate's descriptors went from %d to %d: Envoy passed the stalled requests on", start.fds, peak.fds)
				}
			}},
	})
}

// repeat runs one request after another, 5 ms apart, for d.
func repeat(d time.Duration, one func() error) legitResult {
	r := legitResult{errs: map[string]int{}}
	var took []time.Duration
	for end := time.Now().Add(d); time.Now().Before(end); {
		start := time.Now()
		err := one()
		took = append(took, time.Since(start))
		if err != nil {
			r.failed++
			r.errs[err.Error()]++
		}
		time.Sleep(5 * time.Millisecond)
	}
	slices.Sort(took)
	r.n = len(took)
	if r.n > 0 {
		r.p99 = took[r.n*99/100]
	}
	return r
}

// flood runs workers goroutines, each calling one with a counter of its
// own, until the returned stop is called.
func flood(workers int, one func(i int) error) func() {
	var stopped atomic.Bool
	var wg sync.WaitGroup
	var n atomic.Int64
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() {
				_ = one(int(n.Add(1)))
			}
		}()
	}
	return func() { stopped.Store(true); wg.Wait() }
}

func expectStatus(c *http.Client, req *http.Request, want int) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// forger returns a function that forges the i-th token from a real one:
// its claims with a jti of i and a random signature, under the real
// header, or (newKid) a header naming a kid of its own.
func forger(t *testing.T, real string, newKid bool) func(i int) string {
	parts := strings.Split(real, ".")
	if len(parts) != 3 {
		t.Fatal("not a compact JWS")
	}
	var claims map[string]any
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err == nil {
		err = json.Unmarshal(raw, &claims)
	}
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 256)
	enc := base64.RawURLEncoding.EncodeToString
	return func(i int) string {
		c := map[string]any{}
		for k, v := range claims {
			c[k] = v
		}
		c["jti"] = strconv.Itoa(i)
		payload, _ := json.Marshal(c)
		header := parts[0]
		if newKid {
			header = enc([]byte(`{"alg":"RS256","typ":"JWT","kid":"forged-` + strconv.Itoa(i) + `"}`))
		}
		_, _ = rand.Read(sig)
		return header + "." + enc(payload) + "." + enc(sig)
	}
}

// grpcClient sends alice's thread read as Envoy sends a Check.
func grpcClient(t *testing.T, lg *langgate, tok string) legitClient {
	conn, err := grpc.NewClient(lg.grpc, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	c := authv3.NewAuthorizationClient(conn)
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
		Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: threadPath, Headers: map[string]string{
			":authority": "langgraph.test", ":method": "GET", ":path": threadPath, "authorization": "Bearer " + tok,
		}},
	}}}
	return func(d time.Duration) legitResult {
		return repeat(d, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := c.Check(ctx, req)
			if err != nil {
				return err
			}
			if code := resp.GetStatus().GetCode(); code != 0 {
				return fmt.Errorf("check code %d", code)
			}
			return nil
		})
	}
}

// procUsage is what a process holds.
type procUsage struct {
	rss             int64
	fds, goroutines int
	// checks is the gRPC Checks in flight, cached the users in the
	// verified-token cache (from /metrics).
	checks, cached int
}

func (u procUsage) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds, %d goroutines, %d gRPC checks in flight", float64(u.rss)/(1<<20), u.fds, u.goroutines, u.checks)
}

// max is the larger of each field.
func (u procUsage) max(v procUsage) procUsage {
	return procUsage{rss: max(u.rss, v.rss), fds: max(u.fds, v.fds), goroutines: max(u.goroutines, v.goroutines),
		checks: max(u.checks, v.checks), cached: max(u.cached, v.cached)}
}

var (
	goroutinesMetric = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)
	checksMetric     = regexp.MustCompile(`(?m)^langgate_grpc_checks_in_flight (\d+)`)
	cachedMetric     = regexp.MustCompile(`(?m)^langgate_token_cache_entries (\d+)`)
)

func usage(t *testing.T, pid int, admin string) procUsage {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	u := procUsage{rss: proc.RSS(pid), fds: len(fds)}
	if body, err := proc.Fetch("http://" + admin + "/metrics"); err == nil {
		for _, m := range []struct {
			re *regexp.Regexp
			to *int
		}{{goroutinesMetric, &u.goroutines}, {checksMetric, &u.checks}, {cachedMetric, &u.cached}} {
			if s := m.re.FindStringSubmatch(body); s != nil {
				*m.to, _ = strconv.Atoi(s[1])
			}
		}
	} else {
		t.Errorf("the admin port did not answer during the attack: %v", err)
	}
	if u.rss == 0 {
		t.Fatal("could not read langgate's memory from /proc")
	}
	return u
}

var sampleLine = regexp.MustCompile(`^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$`)

// metricSum is the sum of a metric's samples on langgate's /metrics.
func metricSum(t *testing.T, admin, name string) float64 {
	t.Helper()
	body, err := proc.Fetch("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if m := sampleLine.FindStringSubmatch(line); m != nil && m[1] == name {
			v, _ := strconv.ParseFloat(m[3], 64)
			sum += v
		}
	}
	return sum
}

// TestSheddingUnderMemoryPressure: with langgate's memory held near its
// limit (3,000 idle HTTP-mode connections, and a --memory-limit chosen so
// that they take it to 86% of it, between the high and critical levels),
// a user already verified (alice) keeps being served, a token it has not
// verified yet (bob's) is refused with 503 instead of verified, and the
// admin port keeps answering /readyz and /metrics. Once the connections
// go, memory falls and bob is verified and served.
func TestSheddingUnderMemoryPressure(t *testing.T) {
	const conns = 3000
	args := []string{"--http-idle-timeout", "60s", "--http-read-timeout", "60s", "--pprof"}
	alice, bob := token(t, "alice"), token(t, "bob")
	read := func(lg *langgate, tok string) int {
		req, _ := http.NewRequest("GET", "http://"+lg.http+"/envoy"+threadPath, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	idle := func(lg *langgate) func() {
		var cs []net.Conn
		for range conns {
			c, err := net.DialTimeout("tcp", lg.http, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.WriteString(c, "GET /envoy/threads HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			cs = append(cs, c)
		}
		return func() {
			for _, c := range cs {
				_ = c.Close()
			}
		}
	}
	// What the process holds with the connections open, as the overload
	// guard measures it (after a collection: /debug/pprof/heap?gc=1).
	measured := func(lg *langgate) float64 {
		if _, err := proc.Fetch("http://" + lg.admin + "/debug/pprof/heap?gc=1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(300 * time.Millisecond)
		body, err := proc.Fetch("http://" + lg.admin + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`(?m)^langgate_overload_memory_bytes\{kind="used"\} (\S+)`).FindStringSubmatch(body)
		if m == nil {
			t.Fatal("no langgate_overload_memory_bytes on /metrics")
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	calib := startLanggateWith(t, "../../examples/langgraph/langgate.yaml", nil, append(args, "--memory-limit", "off")...)
	read(calib, alice)
	stop := idle(calib)
	used := measured(calib)
	stop()
	calib.kill()
	limit := int64(used / 0.86)
	t.Logf("the guard measures %.1f MiB with %d idle connections: --memory-limit %d bytes", used/(1<<20), conns, limit)

	lg := startLanggateWith(t, "../../examples/langgraph/langgate.yaml", nil, append(args, "--memory-limit", strconv.FormatInt(limit, 10))...)
	if got := read(lg, alice); got != 200 {
		t.Fatalf("alice before the pressure: %d", got)
	}
	stop = idle(lg)
	level := func() float64 { return metricSum(t, lg.admin, "langgate_overload_level") }
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not within 10 s (level %v, %s)", what, level(), usage(t, lg.cmd.Process.Pid, lg.admin))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitUntil("high memory pressure", func() bool { return level() == 1 })
	for i := range 20 {
		if got := read(lg, alice); got != 200 {
			t.Errorf("alice (verified before) under pressure, request %d: %d", i, got)
		}
		if got := testproc.HTTPStatus("http://" + lg.admin + "/readyz"); got != 200 {
			t.Errorf("/readyz under pressure: %d", got)
		}
	}
	if got := read(lg, bob); got != 503 {
		t.Errorf("bob (not verified yet) under pressure: %d, want 503", got)
	}
	if n := metricSum(t, lg.admin, "langgate_overload_shed_total"); n < 1 {
		t.Errorf("%v checks shed", n)
	}
	stop()
	waitUntil("the pressure gone", func() bool { return level() == 0 })
	if got := read(lg, bob); got != 200 {
		t.Errorf("bob after the pressure: %d, want 200", got)
	}
}
