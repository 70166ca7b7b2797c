// Package proc runs and watches the processes the load benchmarks start
// (langgate, the noop baseline, a trivial upstream): starting one and
// reading the address it prints, waiting until it is ready, its CPU time
// and resident memory, fetching from its admin port, stopping it.
package proc

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/langgate/langgate/internal/procgroup"
)

// StartAndRead starts cmd as a process group of its own and returns the
// rest of the first stdout line that begins with prefix (an address it
// listens on); the rest of its output is discarded.
func StartAndRead(cmd *exec.Cmd, prefix string) (string, error) {
	procgroup.Prepare(cmd)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", err
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			go func() { _, _ = io.Copy(io.Discard, out) }()
			return strings.TrimSpace(v), nil
		}
	}
	return "", errors.New("exited without " + prefix)
}

// Stop ends a started process group (procgroup.Stop: SIGTERM, then
// SIGKILL after 5 s) and waits for it.
func Stop(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	procgroup.Stop(cmd, done, 5*time.Second)
}

// FreeAddr returns a loopback address nothing listens on.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitOK polls url until it answers 200, for at most 30 s.
func WaitOK(url string) error {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(url); err == nil { //nolint:gosec // a loopback URL the benchmark built
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
	}
	return fmt.Errorf("%s not ready in 30 s", url)
}

// Fetch GETs url and returns its body (at most 64 MiB: a heap profile of
// 100,000 cached users), failing on any status but 200.
func Fetch(url string) (string, error) {
	resp, err := http.Get(url) //nolint:gosec // a loopback URL the benchmark built
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("GET %s: %d %w", url, resp.StatusCode, err)
	}
	return string(b), nil
}

// BuildNoop builds bench/noop (the baseline ext_authz server) from the
// module at root into dir and returns the binary's path.
func BuildNoop(root, dir string) (string, error) {
	bin := filepath.Join(dir, "noop")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./bench/noop")
	build.Dir, build.Stdout, build.Stderr = root, os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build bench/noop: %w", err)
	}
	return bin, nil
}

// SaveProfile writes langgate's pprof profile kind (profile, allocs)
// covering d, fetched from its admin address, to file.
func SaveProfile(admin, kind, file string, d time.Duration) error {
	b, err := Fetch(fmt.Sprintf("%s/debug/pprof/%s?seconds=%d", admin, kind, int(d.Seconds())))
	if err != nil {
		return err
	}
	return os.WriteFile(file, []byte(b), 0o600)
}

// CPUTime is a process's user+system CPU time so far (/proc/PID/stat).
func CPUTime(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b)[i+2:])
	if len(f) < 13 {
		return 0
	}
	var ut, st int64
	_, _ = fmt.Sscan(f[11], &ut)
	_, _ = fmt.Sscan(f[12], &st)
	return time.Duration(ut+st) * time.Second / 100 // USER_HZ is 100 on Linux
}

// RSS is a process's resident set size in bytes (/proc/PID/status), 0
// when it cannot be read.
func RSS(pid int) int64 { return status(pid, "VmRSS:") }

// PeakRSS is the highest resident set size the process has had, in bytes
// (VmHWM), 0 when it cannot be read.
func PeakRSS(pid int) int64 { return status(pid, "VmHWM:") }

// status reads one "Field:   N kB" line of /proc/PID/status, in bytes.
func status(pid int, field string) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field); ok {
			var kb int64
			_, _ = fmt.Sscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			return kb << 10
		}
	}
	return 0
}
