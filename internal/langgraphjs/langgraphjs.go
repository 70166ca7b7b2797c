// Package langgraphjs runs the real LangGraph JS API server of test/e2e —
// server.mjs: @langchain/langgraph-api from the pinned npm packages, with
// the e2e graphs and langgate's upstream adapter — as a child process, for
// the end-to-end tests and `make demo`. The langgate binary never imports
// it.
package langgraphjs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/langgate/langgate/internal/procgroup"
)

// Options configure Start.
type Options struct {
	// Dir holds server.mjs and its node_modules (test/e2e).
	Dir string
	// Port is the port to listen on, on 127.0.0.1; 0 picks a free one.
	Port int
	// Stderr receives the server's logs (JSON lines); discarded when nil.
	Stderr io.Writer
	// LogLevel is the server's (default "warn").
	LogLevel string
	// Timeout bounds the wait for the server to answer (default 120 s).
	Timeout time.Duration
	// Config is the langgraph.json to serve (server.mjs's default, the one
	// in Dir, when empty).
	Config string
	// Env is added to the server's environment.
	Env []string
}

// Server is a running server.
type Server struct {
	// URL is its base URL, http://127.0.0.1:port.
	URL  string
	cmd  *exec.Cmd
	done chan struct{}
}

// Start runs node server.mjs in opts.Dir and returns once it has printed
// its READY line (it answers HTTP by then).
func Start(opts Options) (*Server, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return nil, fmt.Errorf("node (Node.js) is required: %w", err)
	}
	if _, err := os.Stat(filepath.Join(opts.Dir, "node_modules", "@langchain", "langgraph-api")); err != nil {
		return nil, fmt.Errorf("%s/node_modules is missing: run `make node-deps` (make test and make demo do): %w", opts.Dir, err)
	}
	if opts.LogLevel == "" {
		opts.LogLevel = "warn"
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 120 * time.Second
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	args := []string{"server.mjs"}
	if opts.Config != "" {
		args = append(args, opts.Config)
	}
	cmd := exec.Command(node, args...)
	cmd.Dir = opts.Dir
	cmd.Env = append(os.Environ(), "PORT="+strconv.Itoa(opts.Port), "LOG_LEVEL="+opts.LogLevel)
	cmd.Env = append(cmd.Env, opts.Env...)
	cmd.Stderr = opts.Stderr
	// Its own process group (the server may start workers), killed with
	// the caller.
	procgroup.Prepare(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{cmd: cmd, done: make(chan struct{})}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- strings.TrimSpace(u)
			}
		}
		_ = cmd.Wait()
		close(s.done)
	}()
	select {
	case s.URL = <-ready:
		return s, nil
	case <-s.done:
		return nil, errors.New("the LangGraph server exited before it was ready (see its log)")
	case <-time.After(opts.Timeout):
		s.Stop()
		return nil, fmt.Errorf("the LangGraph server was not ready after %v (see its log)", opts.Timeout)
	}
}

// Stop ends the server's process group: SIGTERM, then SIGKILL after 10 s.
func (s *Server) Stop() {
	procgroup.Stop(s.cmd, s.done, 10*time.Second)
}
