package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/langgate/langgate/bench/proc"
)

// TestHTTPModeUnderHostileLoad runs the two attacks of issue 29 against
// the real binary's HTTP mode while a legitimate client (alice, a thread
// read through the Envoy endpoint) keeps sending requests:
//
//   - 200 anonymous connections each declare a 1 MiB body, send all but
//     its last byte, and stall;
//   - 3,000 anonymous keep-alive connections send one request each and
//     then stay idle.
//
// langgate authenticates before it reads a body and reads one only on a
// route whose rules need it, so a stalled anonymous body holds nothing:
// its connection is answered (401) and closed. Idle connections are closed
// after --http-idle-timeout, and over --http-max-conns a waiting one makes
// room for a new one. Each attack must leave langgate's RSS within +32 MiB
// of what it was before, its descriptors and goroutines bounded by the
// connection cap, the attackers' connections closed within the configured
// timeout, and every request of the legitimate client answered 200; the
// client's p99 during the attack is logged beside its p99 without one.
func TestHTTPModeUnderHostileLoad(t *testing.T) {
	// Shorter timeouts than the defaults (10 s read, 30 s idle), for a
	// short test, and a connection cap of 512 (the default, 8,192, is
	// sized for a proxy's burst of checks in flight).
	const idle, maxConns = 3 * time.Second, 512
	lg := startLanggateWith(t, "../../examples/langgraph/langgate.yaml", nil,
		"--http-idle-timeout", idle.String(), "--http-read-timeout", idle.String(), "--http-max-conns", strconv.Itoa(maxConns))
	pid := lg.cmd.Process.Pid
	alice := token(t, "alice")
	target := "http://" + lg.http + "/envoy/threads/1ef5c0de-1b2c-6d3e-8f90-123456789abc"
	legit := func(d time.Duration) (p99 time.Duration, failed int, n int) {
		client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{}}
		defer client.CloseIdleConnections()
		var took []time.Duration
		for end := time.Now().Add(d); time.Now().Before(end); {
			req, _ := http.NewRequest("GET", target, nil)
			req.Header.Set("Authorization", "Bearer "+alice)
			start := time.Now()
			resp, err := client.Do(req)
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			took = append(took, time.Since(start))
			if err != nil || resp.StatusCode != 200 {
				failed++
			}
			time.Sleep(5 * time.Millisecond)
		}
		slices.Sort(took)
		return took[len(took)*99/100], failed, len(took)
	}
	base99, failed, n := legit(2 * time.Second)
	if failed > 0 {
		t.Fatalf("the legitimate client failed %d of %d requests before any attack", failed, n)
	}
	before := usage(t, pid, lg.admin)
	t.Logf("before: %s; the legitimate client's p99 %v over %d requests", before, base99, n)

	for _, attack := range []struct {
		name  string
		conns int
		run   func(c net.Conn)
	}{
		{"stalled 1 MiB bodies", 200, func(c net.Conn) {
			fmt.Fprintf(c, "POST /envoy/store/items HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 1<<20)
			_, _ = c.Write(make([]byte, 1<<20-1))
		}},
		{"idle keep-alive connections", 3000, func(c net.Conn) {
			_, _ = io.WriteString(c, "GET /envoy/threads HTTP/1.1\r\nHost: x\r\n\r\n")
			if resp, err := http.ReadResponse(bufio.NewReader(c), nil); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}},
	} {
		t.Run(attack.name, func(t *testing.T) {
			start := usage(t, pid, lg.admin)
			var wg sync.WaitGroup
			conns := make(chan net.Conn, attack.conns)
			type result struct {
				p99       time.Duration
				failed, n int
			}
			res := make(chan result, 1)
			go func() { p, f, n := legit(idle + 2*time.Second); res <- result{p, f, n} }()
			began := time.Now()
			// When the attackers' descriptors are gone again.
			closed := make(chan time.Duration, 1)
			go func() {
				time.Sleep(200 * time.Millisecond)
				for time.Since(began) < idle+10*time.Second {
					if usage(t, pid, lg.admin).fds <= start.fds+8 {
						closed <- time.Since(began)
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
				closed <- -1
			}()
			for range attack.conns {
				c, err := net.DialTimeout("tcp", lg.http, 5*time.Second)
				if err != nil {
					t.Errorf("dial: %v", err)
					break
				}
				conns <- c
				wg.Add(1)
				go func() { defer wg.Done(); attack.run(c) }()
			}
			dialed := time.Since(began)
			time.Sleep(500 * time.Millisecond)
			during := usage(t, pid, lg.admin)
			r := <-res
			t.Logf("%d connections; during: %s; the legitimate client's p99 %v over %d requests (%v without the attack)", attack.conns, during, r.p99, r.n, base99)
			if r.failed > 0 {
				t.Errorf("the legitimate client failed %d of %d requests during the attack", r.failed, r.n)
			}
			if grow := during.rss - start.rss; grow > 32<<20 {
				t.Errorf("RSS grew by %.1f MiB during the attack, over 32 MiB", float64(grow)/(1<<20))
			}
			if during.fds > start.fds+maxConns+16 || during.goroutines > start.goroutines+2*maxConns {
				t.Errorf("during the attack: %s, beyond the cap of %d connections", during, maxConns)
			}
			// Within the configured timeout (and a second of slack) of the
			// last connection, the attackers' connections are closed.
			closedIn := <-closed
			after := usage(t, pid, lg.admin)
			t.Logf("after: %s; the attackers' connections closed %v after the attack began", after, closedIn.Round(50*time.Millisecond))
			if closedIn < 0 || closedIn > dialed+idle+time.Second {
				t.Errorf("the attackers' connections were still open %v after the attack began (%s; timeout %v)", idle+10*time.Second, after, idle)
			}
			close(conns)
			for c := range conns {
				_ = c.Close()
			}
			wg.Wait()
		})
	}
}

// procUsage is what a process holds.
type procUsage struct {
	rss             int64
	fds, goroutines int
}

func (u procUsage) String() string {
	return fmt.Sprintf("RSS %.1f MiB, %d fds, %d goroutines", float64(u.rss)/(1<<20), u.fds, u.goroutines)
}

var goroutinesMetric = regexp.MustCompile(`(?m)^go_goroutines (\d+)`)

func usage(t *testing.T, pid int, admin string) procUsage {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	u := procUsage{rss: proc.RSS(pid), fds: len(fds)}
	if body, err := proc.Fetch("http://" + admin + "/metrics"); err == nil {
		if m := goroutinesMetric.FindStringSubmatch(body); m != nil {
			u.goroutines, _ = strconv.Atoi(m[1])
		}
	}
	if u.rss == 0 {
		t.Fatal("could not read langgate's memory from /proc")
	}
	return u
}
