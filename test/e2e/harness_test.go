package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/langgate/langgate/internal/envoyproc"
	"github.com/langgate/langgate/internal/langgraphjs"
	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

// The fixtures every test of this package shares, started on first use and
// stopped by TestMain: the langgate binary (built once, as `make build`
// does), the dev OIDC issuer, the LangGraph JS server and the tap in front
// of it.
var (
	shared struct {
		once     sync.Once
		err      error
		bin      string
		issuer   *devissuertest.Issuer
		tap      *tap
		jsLog    *testproc.SyncBuffer // the LangGraph JS server's log
		cleanups []func()
	}
)

func TestMain(m *testing.M) {
	code := m.Run()
	for i := len(shared.cleanups) - 1; i >= 0; i-- {
		shared.cleanups[i]()
	}
	os.Exit(code)
}

// fixtures starts the shared fixtures once; a test that needs them fails
// (never skips) when they cannot start.
func fixtures(t *testing.T) {
	t.Helper()
	shared.once.Do(func() { shared.err = startShared() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
}

func startShared() error {
	dir, err := os.MkdirTemp("", "langgate-e2e-")
	if err != nil {
		return err
	}
	shared.cleanups = append(shared.cleanups, func() { _ = os.RemoveAll(dir) })
	// The binary users run, built the way `make build` builds it.
	shared.bin = filepath.Join(dir, "langgate")
	build := exec.Command("go", "build", "-trimpath", "-o", shared.bin, "../../cmd/langgate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/langgate: %w\n%s", err, out)
	}
	if shared.issuer, err = devissuertest.New(devissuer.Options{}); err != nil {
		return err
	}
	shared.cleanups = append(shared.cleanups, func() { shared.issuer.Close() })
	lgLog := &testproc.SyncBuffer{}
	shared.jsLog = lgLog
	lg, err := langgraphjs.Start(langgraphjs.Options{Dir: ".", Stderr: lgLog, Timeout: 90 * time.Second})
	if err != nil {
		return fmt.Errorf("%w; its log:\n%s", err, lgLog.String())
	}
	shared.cleanups = append(shared.cleanups, lg.Stop)
	up, err := url.Parse(lg.URL)
	if err != nil {
		return err
	}
	if shared.tap, err = newTap(up); err != nil {
		return err
	}
	shared.cleanups = append(shared.cleanups, shared.tap.close)
	return nil
}

// token mints a one-hour token from the shared issuer.
func token(t *testing.T, sub string) string {
	t.Helper()
	fixtures(t)
	tok, err := shared.issuer.Token(sub, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// tap is a reverse proxy in front of the LangGraph server that remembers
// the headers of every request carrying a probeHeader: what the upstream
// received, as the upstream received it. It flushes every write at once, so
// a stream is not buffered here.
type tap struct {
	addr string
	srv  *http.Server
	mu   sync.Mutex
	seen map[string][]http.Header
}

// probeHeader marks a request whose upstream headers a test will inspect.
const probeHeader = "X-E2e-Probe"

func newTap(upstream *url.URL) (*tap, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	tp := &tap{addr: ln.Addr().String(), seen: map[string][]http.Header{}}
	rp := httputil.NewSingleHostReverseProxy(upstream)
	rp.FlushInterval = -1
	tp.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := r.Header.Get(probeHeader); id != "" {
			tp.mu.Lock()
			tp.seen[id] = append(tp.seen[id], r.Header.Clone())
			tp.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = tp.srv.Serve(ln) }()
	return tp, nil
}

func (tp *tap) close() { tp.srv.Close() }

// received returns the headers of each request with this probe id that
// reached the upstream.
func (tp *tap) received(id string) []http.Header {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.seen[id]
}

// newProbe returns a fresh probe id.
func newProbe() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// langgate is `langgate serve` as a process, on addresses that survive a
// restart.
type langgate struct {
	t                 *testing.T
	args              []string
	grpc, admin, http string
	env               []string // added to the process's environment
	cmd               *exec.Cmd
	log               *testproc.SyncBuffer
	done              chan struct{}
}

// startLanggate runs the built binary with the configuration file config
// (relative to this directory), trusting the shared issuer, with every
// transport on a loopback port.
func startLanggate(t *testing.T, config string) *langgate {
	t.Helper()
	return startLanggateWith(t, config, nil)
}

// startLanggateWith is startLanggate with env (NAME=value) added to the
// process's environment and args to its command line.
func startLanggateWith(t *testing.T, config string, env []string, args ...string) *langgate {
	t.Helper()
	fixtures(t)
	lg := &langgate{t: t, grpc: testproc.FreeAddr(t), admin: testproc.FreeAddr(t), http: testproc.FreeAddr(t), log: &testproc.SyncBuffer{}, env: env}
	lg.args = []string{"serve", "--config", config, "--grpc-addr", lg.grpc, "--admin-addr", lg.admin, "--http-addr", lg.http,
		"--log-format", "text", "--watch-interval", "0"}
	lg.args = append(lg.args, args...)
	// Registered before the start, so that a langgate that never becomes
	// ready is killed and its log shown too.
	t.Cleanup(func() {
		lg.kill()
		if t.Failed() {
			t.Logf("langgate log:\n%s", lg.log.String())
		}
	})
	lg.start()
	return lg
}

// start runs the process and waits until it is ready.
func (lg *langgate) start() {
	lg.t.Helper()
	lg.cmd = exec.Command(shared.bin, lg.args...)
	lg.cmd.Env = append(append(os.Environ(), "OIDC_ISSUER="+shared.issuer.URL, "OIDC_AUDIENCE="+shared.issuer.Audience), lg.env...)
	lg.cmd.Stdout, lg.cmd.Stderr = lg.log, lg.log
	lg.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := lg.cmd.Start(); err != nil {
		lg.t.Fatal(err)
	}
	done := make(chan struct{})
	lg.done = done
	go func(c *exec.Cmd) { _ = c.Wait(); close(done) }(lg.cmd)
	testproc.WaitFor(lg.t, 30*time.Second, func() bool { return testproc.HTTPStatus("http://"+lg.admin+"/readyz") == 200 }, "langgate never became ready in 30 s (its log is printed at cleanup)")
}

// kill ends the process at once (SIGKILL) and waits for it; a no-op when
// it is not running.
func (lg *langgate) kill() {
	if lg.cmd == nil || lg.cmd.Process == nil {
		return
	}
	_ = lg.cmd.Process.Signal(syscall.SIGCONT) // a paused process must be able to die
	_ = lg.cmd.Process.Kill()
	<-lg.done
	lg.cmd = nil
}

// signal sends sig to the running process.
func (lg *langgate) signal(sig syscall.Signal) {
	lg.t.Helper()
	if err := lg.cmd.Process.Signal(sig); err != nil {
		lg.t.Fatal(err)
	}
}

// pause stops the process (SIGSTOP) and waits until every one of its
// threads is stopped: kill(2) returns before a multi-threaded process has
// finished stopping, and a thread still running could answer one more
// request.
func (lg *langgate) pause() {
	lg.t.Helper()
	lg.signal(syscall.SIGSTOP)
	pid := lg.cmd.Process.Pid
	testproc.WaitFor(lg.t, 5*time.Second, func() bool {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil || len(tasks) == 0 {
			return false
		}
		for _, task := range tasks {
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err != nil {
				return false
			}
			// pid (comm) state ...: the state follows the last ')'.
			i := bytes.LastIndexByte(b, ')')
			if i < 0 || i+2 >= len(b) || (b[i+2] != 'T' && b[i+2] != 't') {
				return false
			}
		}
		return true
	}, "langgate did not stop on SIGSTOP")
}

// decisions scrapes /metrics: langgate_decisions_total summed by outcome.
func (lg *langgate) decisions() map[string]float64 {
	lg.t.Helper()
	resp, err := http.Get("http://" + lg.admin + "/metrics")
	if err != nil {
		lg.t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		labels, ok := strings.CutPrefix(line, "langgate_decisions_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(labels, "} ")
		if !ok {
			lg.t.Fatalf("metrics line %q", line)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			lg.t.Fatalf("metrics line %q: %v", line, err)
		}
		for _, l := range strings.Split(labels, ",") {
			if o, ok := strings.CutPrefix(l, `outcome="`); ok {
				out[strings.TrimSuffix(o, `"`)] += v
			}
		}
	}
	return out
}

// envoyFor starts the real Envoy with a shipped configuration (a file in
// ../../envoy), its langgate cluster pointed at lg (gRPC or HTTP mode, as
// the file says) and its LangGraph cluster at the tap. patch, when not
// nil, changes the configuration first.
func envoyFor(t *testing.T, file string, lg *langgate, patch func(*envoyproc.Config)) *envoyproc.Envoy {
	t.Helper()
	return envoyTo(t, file, lg, shared.tap.addr, patch)
}

// envoyTo is envoyFor with the LangGraph cluster at upstream.
func envoyTo(t *testing.T, file string, lg *langgate, upstream string, patch func(*envoyproc.Config)) *envoyproc.Envoy {
	t.Helper()
	cfg, err := envoyproc.LoadConfig(filepath.Join("../../envoy", file))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Loopback()
	adminPort := testproc.Port(t, lg.admin)
	switch {
	case cfg.Cluster("langgate") != nil:
		err = cfg.SetEndpoint("langgate", lg.grpc, adminPort)
	case cfg.Cluster("langgate_http") != nil:
		err = cfg.SetEndpoint("langgate_http", lg.http, adminPort)
	default:
		err = errors.New("no langgate cluster")
	}
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if err := cfg.SetEndpoint("langgraph", upstream, 0); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if patch != nil {
		patch(cfg)
	}
	return envoyproc.StartT(t, cfg, envoyproc.Options{})
}

// relaxed sets the check timeout of tests that are not about timeouts: the
// shipped 50 ms is for production, these run beside -race test binaries on
// a loaded two-core machine.
func relaxed(cfg *envoyproc.Config) {
	if cfg.SetCheckTimeout(2*time.Second) == 0 {
		panic("relaxed: the configuration has no ext_authz service timeout")
	}
}

// response is what a client got.
type response struct {
	status int
	proto  string
	header http.Header
	body   string
}

// detail is the "detail" of a JSON error body ("" if it is not one).
func (r response) detail() string {
	var b struct {
		Detail string `json:"detail"`
	}
	if json.Unmarshal([]byte(r.body), &b) != nil {
		return ""
	}
	return b.Detail
}

// send makes one request with client; headers may repeat a name.
func send(t *testing.T, client *http.Client, method, url string, headers [][2]string, body []byte) response {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		if strings.EqualFold(h[0], "Host") {
			req.Host = h[1] // net/http sends req.Host, never a Host header
			continue
		}
		req.Header.Add(h[0], h[1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, proto: resp.Proto, header: resp.Header, body: string(b)}
}

// h1 is an HTTP/1.1 client; h2 speaks HTTP/2 over cleartext (prior
// knowledge, as gRPC-style and h2c clients do).
var (
	h1 = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{}}
	h2 = func() *http.Client {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{Protocols: &p}}
	}()
)

// seedVariant writes the seed policy (examples/langgraph/langgate.yaml)
// with each {old, new} replacement applied once — each must apply, so a
// change to the example cannot silently void a test — and extra appended,
// to a file of the test's, and returns its path.
func seedVariant(t *testing.T, extra string, replace ...[2]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(seedText(t, replace...)+extra), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// seedText is the seed policy's text with each {old, new} replacement
// applied once; each must apply.
func seedText(t *testing.T, replace ...[2]string) string {
	t.Helper()
	base, err := os.ReadFile(seedPolicy)
	if err != nil {
		t.Fatal(err)
	}
	text := string(base)
	for _, r := range replace {
		if !strings.Contains(text, r[0]) {
			t.Fatalf("the seed policy no longer has %q, which this test replaces", r[0])
		}
		text = strings.Replace(text, r[0], r[1], 1)
	}
	return text
}

// createThread creates a thread through url (a proxy) with headers and
// body, and returns its id and metadata; any failure ends the test.
func createThread(t *testing.T, url string, headers [][2]string, body string) (string, map[string]any) {
	t.Helper()
	r := send(t, h1, "POST", url+"/threads", append(headers, jsonType), []byte(body))
	var th struct {
		ThreadID string         `json:"thread_id"`
		Metadata map[string]any `json:"metadata"`
	}
	if r.status != 200 || json.Unmarshal([]byte(r.body), &th) != nil || th.ThreadID == "" {
		t.Fatalf("creating a thread: %d %s", r.status, r.body)
	}
	return th.ThreadID, th.Metadata
}
