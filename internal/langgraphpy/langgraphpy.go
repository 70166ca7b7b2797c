// Package langgraphpy runs the real LangGraph Python API server
// (langgraph-api with the in-memory runtime, as `langgraph dev` serves it,
// from the hash-pinned packages in .cache/venv) as a child process, for the
// end-to-end tests. The langgate binary never imports it.
//
// Each start is empty: the server runs in a fresh temporary directory (the
// in-memory runtime persists to .langgraph_api in its working directory),
// with a copy of the given langgraph.json whose paths are made absolute.
package langgraphpy

import (
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
	"time"

	"github.com/langgate/langgate/internal/procgroup"
)

// VenvEnv names the virtualenv to use instead of .cache/venv.
const VenvEnv = "LANGGRAPH_PY_VENV"

// ErrNotInstalled is returned when the virtualenv has no langgraph CLI.
var ErrNotInstalled = errors.New("the LangGraph Python server is not installed: run `make pydeps` (make test does)")

// Options configure Start.
type Options struct {
	// Config is the langgraph.json to serve; paths in it are relative to
	// its directory.
	Config string
	// Venv is the virtualenv holding langgraph-cli; $LANGGRAPH_PY_VENV,
	// else .cache/venv of the module, when empty.
	Venv string
	// Port is the port to listen on, on 127.0.0.1; 0 picks a free one.
	Port int
	// Stderr receives the server's logs; discarded when nil.
	Stderr io.Writer
	// Env is added to the server's environment.
	Env []string
	// Timeout bounds the wait for the server to answer /ok (default 120 s).
	Timeout time.Duration
}

// Server is a running server.
type Server struct {
	// URL is its base URL, http://127.0.0.1:port.
	URL  string
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Venv returns the virtualenv the tests use: $LANGGRAPH_PY_VENV, else
// .cache/venv under root.
func Venv(root string) string {
	if v := os.Getenv(VenvEnv); v != "" {
		return v
	}
	return filepath.Join(root, ".cache", "venv")
}

// Start runs `langgraph dev` for opts.Config and returns once the server
// answers GET /ok with 200.
func Start(opts Options) (*Server, error) {
	if opts.Venv == "" {
		return nil, errors.New("langgraphpy: Options.Venv is required (see Venv)")
	}
	cli := filepath.Join(opts.Venv, "bin", "langgraph")
	if _, err := os.Stat(cli); err != nil {
		return nil, fmt.Errorf("%w (looked for %s)", ErrNotInstalled, cli)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 120 * time.Second
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	port := opts.Port
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		port = p
	}
	dir, err := os.MkdirTemp("", "langgraph-py-")
	if err != nil {
		return nil, err
	}
	conf, err := absoluteConfig(opts.Config)
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	confPath := filepath.Join(dir, "langgraph.json")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	cmd := exec.Command(cli, "dev", "--no-browser", "--no-reload", "--host", "127.0.0.1",
		"--port", strconv.Itoa(port), "--config", confPath)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"LANGSMITH_TRACING=false", "LANGCHAIN_TRACING_V2=false", "LANGGRAPH_CLI_NO_ANALYTICS=1",
		"PYTHONUNBUFFERED=1")
	cmd.Env = append(cmd.Env, opts.Env...)
	cmd.Stdout, cmd.Stderr = opts.Stderr, opts.Stderr
	procgroup.Prepare(cmd)
	if err := cmd.Start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	s := &Server{URL: "http://127.0.0.1:" + strconv.Itoa(port), dir: dir, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(s.done)
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(opts.Timeout)
	for {
		select {
		case <-s.done:
			_ = os.RemoveAll(dir)
			return nil, errors.New("the LangGraph Python server exited before it was ready (see its log)")
		default:
		}
		if resp, err := client.Get(s.URL + "/ok"); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("the LangGraph Python server was not ready after %v (see its log)", opts.Timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop ends the server's process group (SIGTERM, then SIGKILL after 10 s)
// and removes its directory.
func (s *Server) Stop() {
	procgroup.Stop(s.cmd, s.done, 10*time.Second)
	_ = os.RemoveAll(s.dir)
}

// absoluteConfig reads a langgraph.json and makes the paths the server
// resolves against its working directory (graphs, auth, http.app,
// dependencies) absolute, relative to the file's directory.
func absoluteConfig(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var conf map[string]any
	if err := json.Unmarshal(data, &conf); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, err
	}
	abs := func(ref string) string {
		file, attr, ok := strings.Cut(ref, ":")
		if !strings.HasPrefix(file, ".") {
			return ref // a module name, not a path
		}
		file = filepath.Join(base, file)
		if ok {
			return file + ":" + attr
		}
		return file
	}
	if graphs, ok := conf["graphs"].(map[string]any); ok {
		for id, ref := range graphs {
			if s, ok := ref.(string); ok {
				graphs[id] = abs(s)
			}
		}
	}
	for _, key := range []string{"auth", "http"} {
		section, ok := conf[key].(map[string]any)
		if !ok {
			continue
		}
		for _, field := range []string{"path", "app"} {
			if s, ok := section[field].(string); ok {
				section[field] = abs(s)
			}
		}
	}
	if deps, ok := conf["dependencies"].([]any); ok {
		for i, d := range deps {
			if s, ok := d.(string); ok {
				deps[i] = abs(s)
			}
		}
	}
	return json.MarshalIndent(conf, "", "  ")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
