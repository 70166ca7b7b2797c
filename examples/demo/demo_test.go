package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test run this binary as the demo itself, a process
// that prints its instructions and runs until signalled.
func TestMain(m *testing.M) {
	if os.Getenv("LANGGATE_DEMO_AS_COMMAND") == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// block is one command of the instructions and what it must print.
type block struct {
	command string
	expect  []string // one pattern per output line; … matches anything
}

// parseInstructions reads the commands between "Paste into a shell" and
// Ready: runs of non-comment lines are a command, the "# → " lines after it
// its output.
func parseInstructions(text string) (setup string, blocks []block, err error) {
	_, rest, ok := strings.Cut(text, "Paste into a shell")
	if !ok {
		return "", nil, fmt.Errorf("no 'Paste into a shell' in:\n%s", text)
	}
	rest, _, ok = strings.Cut(rest, Ready)
	if !ok {
		return "", nil, fmt.Errorf("no %q in:\n%s", Ready, text)
	}
	lines := strings.Split(rest, "\n")[1:]
	var cur []string
	flush := func() {
		if len(cur) > 0 {
			blocks = append(blocks, block{command: strings.Join(cur, "\n")})
			cur = nil
		}
	}
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "# → "):
			flush()
			if len(blocks) == 0 {
				return "", nil, fmt.Errorf("an expectation before any command: %q", l)
			}
			b := &blocks[len(blocks)-1]
			b.expect = append(b.expect, strings.TrimPrefix(l, "# → "))
		case strings.HasPrefix(l, "#"), strings.TrimSpace(l) == "":
			flush()
		default:
			cur = append(cur, l)
		}
	}
	flush()
	// Blocks without expectations (the exports) are the setup.
	var out []block
	for _, b := range blocks {
		if len(b.expect) == 0 {
			setup += b.command + "\n"
		} else {
			out = append(out, b)
		}
	}
	return setup, out, nil
}

// pattern turns an expectation into an anchored regexp: … is anything.
func pattern(expect string) *regexp.Regexp {
	parts := strings.Split(expect, "…")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
}

// TestDemoWorksAsPrinted runs the demo (the real Envoy, langgate --dev, the
// LangGraph Python server, and then the JS one) on free ports, pastes every
// command it prints into bash exactly as printed, and checks each one's
// output against the line the demo says it prints: with the Python server
// these include MCP (the 401, the protected resource metadata, the official
// SDK as alice and bob) and A2A. Then it interrupts the demo, which must
// stop everything it started.
func TestDemoWorksAsPrinted(t *testing.T) {
	for _, c := range []struct {
		server string
		blocks int
	}{{"python", 15}, {"js", 8}} {
		t.Run(c.server, func(t *testing.T) { demoWorks(t, c.server, c.blocks) })
	}
}

func demoWorks(t *testing.T, server string, want int) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{"curl", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required: %v", tool, err)
		}
	}
	dir := t.TempDir()
	lgBin := filepath.Join(dir, "langgate")
	build := exec.Command("go", "build", "-o", lgBin, "../../cmd/langgate")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/langgate: %v\n%s", err, out)
	}

	cmd := exec.Command(os.Args[0], "--random-ports", "--langgate", lgBin, "--server", server)
	cmd.Env = append(os.Environ(), "LANGGATE_DEMO_AS_COMMAND=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // a no-op once it has exited
	printed, exited := make(chan string, 1), make(chan struct{})
	go func() {
		defer close(exited)
		var b strings.Builder
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if sc.Text() == Ready {
				printed <- b.String()
			}
		}
	}()
	var text string
	select {
	case text = <-printed:
	case <-exited:
		_ = cmd.Wait()
		t.Fatalf("the demo exited before printing its instructions; stderr:\n%s", stderr.String())
	case <-time.After(3 * time.Minute):
		t.Fatalf("the demo printed no instructions in 3 minutes; stderr:\n%s", stderr.String())
	}
	t.Logf("the demo printed:\n%s", text)

	setup, blocks, err := parseInstructions(text)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) < want {
		t.Fatalf("%d commands with expected output, want the %d the demo promises", len(blocks), want)
	}
	var script strings.Builder
	script.WriteString("set -u\n" + setup)
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '@@@ %d'\n%s\n", i, b.command)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := exec.CommandContext(ctx, bash, "-c", script.String())
	run.Dir = t.TempDir() // the commands must not depend on where they are pasted
	got, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the printed commands failed: %v\n%s", err, got)
	}
	outputs := regexp.MustCompile(`(?m)^@@@ \d+\n`).Split(string(got), -1)[1:]
	if len(outputs) != len(blocks) {
		t.Fatalf("%d outputs for %d commands:\n%s", len(outputs), len(blocks), got)
	}
	for i, b := range blocks {
		lines := strings.Split(strings.TrimRight(outputs[i], "\n"), "\n")
		if len(lines) != len(b.expect) {
			t.Errorf("command %d printed %d lines, the demo says %d:\n%s\n--- printed:\n%s", i+1, len(lines), len(b.expect), b.command, outputs[i])
			continue
		}
		for j, e := range b.expect {
			if !pattern(e).MatchString(lines[j]) {
				t.Errorf("command %d:\n%s\nprinted %q, the demo says %q", i+1, b.command, lines[j], e)
			}
		}
	}

	// Ctrl-C stops the demo and everything it started.
	lg := regexp.MustCompile(`export LG=http://(\S+)`).FindStringSubmatch(text)
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("the demo exited with %v on SIGINT; stderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the demo did not stop within 30 s of SIGINT")
	}
	if lg != nil {
		if c, err := net.DialTimeout("tcp", lg[1], time.Second); err == nil {
			_ = c.Close()
			t.Errorf("Envoy still listens on %s after the demo stopped", lg[1])
		}
	}
}
