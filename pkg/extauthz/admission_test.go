package extauthz_test

import (
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
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
	go func() { _ = gs.Serve(ln) }()
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

// TestAdmissionBoundsTrickledStreams: a client that opens streams on two
// connections, declares a 2 MiB message on each and sends only part of it
// gets MaxStreams of them admitted across both connections and the rest
// refused (RESOURCE_EXHAUSTED) before any of their message is read; the
// admitted ones are ended at CheckTimeout (DEADLINE_EXCEEDED), whatever
// deadline the client gave (none), their buffers released; and a
// legitimate Check is answered once they are gone.
func TestAdmissionBoundsTrickledStreams(t *testing.T) {
	const maxStreams, timeout = 8, 400 * time.Millisecond
	h, adm, addr := startAdmitting(t, extauthz.Options{MaxStreams: maxStreams, CheckTimeout: timeout})
	tok := h.env.Token(t, "alice", nil)
	var conns []*h2flood.Conn
	for range 2 {
		c, err := h2flood.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		conns = append(conns, c)
	}
	began := time.Now()
	for _, c := range conns {
		if err := c.Flood(10, 2<<20-1, 64<<10, 200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	refused := func() int {
		n := 0
		for _, c := range conns {
			// RESOURCE_EXHAUSTED in the trailers grpc-go sends at once,
			// or the reset that follows them when the client had more to send.
			st := c.Result().Statuses
			n += st["8"] + st["RST"]
		}
		return n
	}
	waitFor(t, "the streams over the cap refused", 2*time.Second, func() bool { return refused() == 20-maxStreams })
	if got := adm.InFlight(); got > maxStreams {
		t.Fatalf("%d Checks in flight, over the cap of %d", got, maxStreams)
	}
	took := waitFor(t, "the admitted streams ended", timeout+2*time.Second, func() bool { return adm.InFlight() == 0 })
	for _, c := range conns {
		if open := c.Open(); open != 0 {
			t.Errorf("%d streams still open on a connection after the check timeout", open)
		}
	}
	deadline := 0
	for _, c := range conns {
		deadline += c.Result().Statuses["4"] // DEADLINE_EXCEEDED
	}
	if deadline != maxStreams {
		t.Errorf("%d streams ended with DEADLINE_EXCEEDED, want the %d admitted (%v, %v)", deadline, maxStreams, conns[0].Result().Statuses, conns[1].Result().Statuses)
	}
	if since := time.Since(began); since < timeout {
		t.Errorf("the admitted streams ended after %v, before the %v timeout", since, timeout)
	}
	t.Logf("admitted streams ended %v after the flood, timeout %v", took, timeout)
	okHeaders(t, h.check(t, call{method: "GET", path: "/threads/t1", token: tok}))
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
