package extauthz_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/langgate/langgate/internal/testengine"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/extauthz"
	"github.com/langgate/langgate/pkg/overload"
	"github.com/langgate/langgate/test/h2flood"
)

// startAdmitting is start with the Checks the server admits bounded by o.
func startAdmitting(t *testing.T, o extauthz.Options) (*harness, *extauthz.Admission, string) {
	t.Helper()
	env := testengine.Start(t, testengine.Options{Overload: o.Overload})
	var engines decision.Holder
	engines.Store(env.Engine)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	adm := extauthz.NewAdmission(o)
	gs := extauthz.NewServerWith(&engines, nil, adm)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(adm.Listener(ln)) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &harness{env: env, client: authv3.NewAuthorizationClient(conn)}, adm, ln.Addr().String()
}

func waitFor(t *testing.T, what string, within time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// TestAdmissionBoundsTrickledStreams: a client that opens 20 streams on
// two connections, declares a 2 MiB message on each and sends only part
// of it holds at most MaxStreams of them: each stream over the cap ends
// the one that has waited longest for its message (so it is the
// trickler's own streams that go), a legitimate Check sent while the
// trickler holds every slot is answered, and the streams left are ended
// at CheckTimeout (DEADLINE_EXCEEDED), whatever deadline the client gave
// (none), their slots released and the connection that sent them so
// slowly closed.
func TestAdmissionBoundsTrickledStreams(t *testing.T) {
	const maxStreams, timeout = 8, time.Second
	h, adm, addr := startAdmitting(t, extauthz.Options{MaxStreams: maxStreams, CheckTimeout: timeout})
	tok := h.env.Token(t, "alice", nil)
	conns := []*h2flood.Conn{dial(t, addr), dial(t, addr)}
	began := time.Now()
	for _, c := range conns {
		if err := c.Flood(10, 2<<20-1, 16<<10, 100*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	statuses := func() map[string]int {
		all := map[string]int{}
		for _, c := range conns {
			for k, v := range c.Result().Statuses {
				all[k] += v
			}
		}
		return all
	}
	// The 12 over the cap each ended an older one: CANCELLED in the
	// trailers, or the reset that follows them.
	waitFor(t, "the streams over the cap made room", 2*time.Second, func() bool { st := statuses(); return st["1"]+st["RST"] == 20-maxStreams })
	if got := adm.InFlight(); got > maxStreams {
		t.Fatalf("%d Checks in flight, over the cap of %d", got, maxStreams)
	}
	okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: tok}))
	if time.Since(began) >= timeout {
		t.Fatalf("the legitimate Check came %v after the flood, not while it held the slots", time.Since(began))
	}
	took := waitFor(t, "the admitted streams ended", timeout+2*time.Second, func() bool { return adm.InFlight() == 0 })
	for i, c := range conns {
		if open := c.Open(); open != 0 && !c.Result().Closed {
			t.Errorf("connection %d: %d streams still open after the check timeout", i, open)
		}
	}
	// The cap evicted the oldest, the legitimate Check one more; the
	// ones left timed out, and the connections that sent them were
	// closed.
	timedOut := 0
	for i, c := range conns {
		r := c.Result()
		if r.Opened-r.Refused > 0 {
			timedOut++
			if !r.Closed {
				t.Errorf("connection %d had streams time out and is still open: %v", i, r)
			}
		}
	}
	// 13 were ended to make room; of the 7 left, the sweep ends those
	// past the timeout when it runs, and closing their connection ends
	// the rest.
	if ev := adm.Evicted(); ev < 20-maxStreams+1 || ev > 20 || adm.ConnsClosed() != uint64(timedOut) {
		t.Errorf("%d evicted, %d connections closed (%v, %v): want %d to 20 evicted and %d closed",
			ev, adm.ConnsClosed(), conns[0].Result(), conns[1].Result(), 20-maxStreams+1, timedOut)
	}
	if since := time.Since(began); since < timeout {
		t.Errorf("the admitted streams ended after %v, before the %v timeout", since, timeout)
	}
	t.Logf("statuses %v; the last streams ended %v after the legitimate Check, timeout %v", statuses(), took, timeout)
}

// TestReceiveSlotsMoveBetweenConnections: a connection's Checks whose
// messages are slow to arrive (here a client that sends 16 KiB of 80
// declared 2 MiB messages; on a machine short of CPU, one proxy's burst)
// stretch the receive slots to 64 and then wait, none ending another of
// the same connection's: that would free nothing for anyone else. A
// connection holding under half its share reads at once from the reserve
// of 16 more slots; once those are taken too, its readers end the slow
// holders of the connection holding the most, until it holds its share.
func TestReceiveSlotsMoveBetweenConnections(t *testing.T) {
	const timeout = 3 * time.Second
	h, adm, addr := startAdmitting(t, extauthz.Options{CheckTimeout: timeout})
	tok := h.env.Token(t, "alice", nil)
	flood := func(n int) {
		t.Helper()
		c := dial(t, addr)
		// Each admitted stream is in flight or was ended.
		seen := func() int64 { return adm.InFlight() + int64(adm.Evicted()) }
		before := seen()
		if err := c.Flood(n, 2<<20-1, 16<<10, time.Second); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the streams admitted", time.Second, func() bool { return seen() == before+int64(n) })
		// The slots have stretched as far as they go (at 50 ms), and
		// their holders are past ReceiveGrace (250 ms).
		time.Sleep(400 * time.Millisecond)
	}
	check := func(evicted uint64) {
		t.Helper()
		start := time.Now()
		okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: tok}))
		if took := time.Since(start); took > timeout/4 {
			t.Errorf("the other connection's Check took %v: it waited behind the slow streams", took)
		}
		if ev := adm.Evicted(); ev != evicted {
			t.Errorf("%d streams ended: want %d", ev, evicted)
		}
	}
	began := time.Now()
	flood(80)
	if ev := adm.Evicted(); ev != 0 {
		t.Fatalf("%d of one connection's streams ended by its own: want 0", ev)
	}
	check(0) // from the reserve
	// A second connection's 20: 16 from the reserve, then 4 of the first
	// one's ended (it holds 64, over twice its share, until the second
	// holds 20 of 80).
	flood(20)
	if ev := adm.Evicted(); ev != 4 {
		t.Errorf("the second connection's streams ended %d of the first one's: want 4", ev)
	}
	check(5) // every slot taken: one of the first connection's ends
	if time.Since(began) >= timeout {
		t.Fatalf("the Checks came %v after the flood, not while it held the slots", time.Since(began))
	}
	waitFor(t, "the slow streams ended at the check timeout", timeout+2*time.Second, func() bool { return adm.InFlight() == 0 })
}

// TestReceiveSlotWaitersWakeWhenHoldersTurnSlow: Checks that wait for a
// slot while every holder is still within ReceiveGrace are granted one
// as soon as a holder passes it, with nothing else happening on the
// server: not at the check timeout.
func TestReceiveSlotWaitersWakeWhenHoldersTurnSlow(t *testing.T) {
	const timeout = 3 * time.Second
	_, adm, addr := startAdmitting(t, extauthz.Options{CheckTimeout: timeout})
	conns := []*h2flood.Conn{dial(t, addr), dial(t, addr)}
	began := time.Now()
	if err := conns[0].Flood(80, 2<<20-1, 16<<10, time.Second); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first connection's streams admitted", time.Second, func() bool { return adm.InFlight() == 80 })
	// Stretched (at 50 ms), every holder still within the grace.
	time.Sleep(100 * time.Millisecond)
	if err := conns[1].Flood(20, 2<<20-1, 16<<10, time.Second); err != nil {
		t.Fatal(err)
	}
	// 16 from the reserve; the other 4 end 4 of the first connection's
	// once those have held their slots for 250 ms.
	took := waitFor(t, "the waiting Checks granted slots", time.Second, func() bool { return adm.Evicted() == 4 })
	if time.Since(began) >= timeout {
		t.Fatalf("granted %v after the flood: at the check timeout, not when the holders turned slow", time.Since(began))
	}
	t.Logf("granted %v after the second flood", took)
}

// TestAdmissionUnderPressure: at overload.High the connections of the
// streams whose message is later than the grace are closed; at Critical
// every stream still receiving is ended, and new ones are refused.
func TestAdmissionUnderPressure(t *testing.T) {
	g := new(overload.Guard)
	_, adm, addr := startAdmitting(t, extauthz.Options{Overload: g, ReceiveGrace: 100 * time.Millisecond})
	slow, young := dial(t, addr), dial(t, addr)
	if err := slow.Flood(5, 2<<20-1, 1<<10, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "five streams admitted", time.Second, func() bool { return adm.InFlight() == 5 })
	time.Sleep(150 * time.Millisecond)
	if err := young.Flood(3, 2<<20-1, 1<<10, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "eight streams admitted", time.Second, func() bool { return adm.InFlight() == 8 })
	g.Observe(85, 100) // High: the connection of the five late ones goes
	waitFor(t, "the late streams' connection closed", time.Second, func() bool { return adm.InFlight() == 3 && slow.Result().Closed })
	if young.Result().Closed || adm.ConnsClosed() != 1 {
		t.Fatalf("at High: %d connections closed, the young one's %v", adm.ConnsClosed(), young.Result())
	}
	g.Observe(95, 100) // Critical: the rest are ended, and new streams refused
	waitFor(t, "every receiving stream ended", time.Second, func() bool { return adm.InFlight() == 0 })
	if adm.Evicted() != 8 {
		t.Errorf("%d evicted, want 8; %v %v %d", adm.Evicted(), slow.Result(), young.Result(), adm.ConnsClosed())
	}
	if err := young.Flood(1, 100, 0, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new stream refused", time.Second, func() bool { return young.Result().Statuses["8"] == 1 })
}

// TestAdmissionRefusesAtCriticalPressure: at overload.Critical a new Check
// is refused before it is read, and counted.
func TestAdmissionRefusesAtCriticalPressure(t *testing.T) {
	g := new(overload.Guard)
	h, _, _ := startAdmitting(t, extauthz.Options{Overload: g})
	tok := h.env.Token(t, "alice", nil)
	okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: tok}))
	g.Observe(95, 100)
	if _, err := h.client.Check(t.Context(), &authv3.CheckRequest{}); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("a Check at critical pressure: %v, want ResourceExhausted", err)
	}
	if st := g.Stats(); st.Refused != 1 {
		t.Fatalf("refused %d, want 1", st.Refused)
	}
	g.Observe(0, 100)
	if g.Level() != overload.Normal {
		t.Fatalf("level %v after memory fell", g.Level())
	}
}

// TestShedUnverifiedAtHighPressure: at overload.High a token not in the
// verified-token cache is refused with 503 (not 401: nothing is wrong
// with it) without being verified, while a user already verified is
// served; back at Normal the new token is verified and allowed.
func TestShedUnverifiedAtHighPressure(t *testing.T) {
	g := new(overload.Guard)
	h, _, _ := startAdmitting(t, extauthz.Options{Overload: g})
	alice, bob := h.env.Token(t, "alice", nil), h.env.Token(t, "bob", nil)
	okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: alice}))
	if g.Observe(85, 100) != overload.High {
		t.Fatal("85% of the limit is not High")
	}
	denial(t, h.check(t, call{method: "GET", path: "/threads/t1", token: bob}), code.Code_UNAVAILABLE, 503, "Service overloaded")
	okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: alice}))
	if st := g.Stats(); st.ShedUnverified != 1 {
		t.Fatalf("shed %d unverified, want 1", st.ShedUnverified)
	}
	// Hysteresis: 78% keeps High, 70% drops it.
	if g.Observe(78, 100) != overload.High || g.Observe(70, 100) != overload.Normal {
		t.Fatal("the level does not follow memory down")
	}
	okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: bob}))
}

// TestHeaderListLimit: gRPC headers over MaxHeaderListBytes are refused
// (grpc-go would hold up to 16 MiB per stream), and the server goes on
// answering.
func TestHeaderListLimit(t *testing.T) {
	h, _, _ := startAdmitting(t, extauthz.Options{})
	tok := h.env.Token(t, "alice", nil)
	ctx := metadata.AppendToOutgoingContext(t.Context(), "x-pad", strings.Repeat("p", extauthz.MaxHeaderListBytes))
	if _, err := h.client.Check(ctx, &authv3.CheckRequest{}); err == nil {
		t.Fatal("a Check with 64 KiB of gRPC headers was answered")
	}
	okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: tok}))
}

// TestAdmissionBoundsOtherMethods: grpc-go reads a unary request whole
// before its handler runs, so streams of other methods (health,
// reflection) are bounded apart: a client trickling 2 MiB health requests
// into 80 streams holds 64 of them at most, the oldest ended first, and a
// real health check is still answered.
func TestAdmissionBoundsOtherMethods(t *testing.T) {
	_, adm, addr := startAdmitting(t, extauthz.Options{})
	c := dial(t, addr)
	c.Path = "/grpc.health.v1.Health/Check"
	if err := c.Flood(80, 2<<20-1, 16<<10, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the oldest 16 ended", 2*time.Second, func() bool { return c.Result().Statuses["1"] == 16 })
	if n := c.Open(); n != 64 {
		t.Errorf("%d health streams open, want 64", n)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health check beside the flood: %v %v", resp, err)
	}
	if adm.InFlight() != 0 {
		t.Errorf("%d Checks in flight: other methods are not Checks", adm.InFlight())
	}
}

// dial opens a raw HTTP/2 connection to addr, closed when the test ends.
func dial(t *testing.T, addr string) *h2flood.Conn {
	t.Helper()
	c, err := h2flood.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}
