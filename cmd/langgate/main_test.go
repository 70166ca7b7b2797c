package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// TestServeDevPrintsWorkingCommands runs `langgate serve --dev` and sends
// every CheckRequest it prints, checking each gives the outcome it promises.
func TestServeDevPrintsWorkingCommands(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--dev", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, pw, io.Discard)
		_ = pw.Close()
	}()

	// Read until the last example's heredoc closes.
	var out strings.Builder
	sc := bufio.NewScanner(pr)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	heredocs := 0
	deadline := time.AfterFunc(30*time.Second, func() { pw.CloseWithError(io.ErrUnexpectedEOF) })
	defer deadline.Stop()
	for heredocs < 4 && sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "EOF" {
			heredocs++
		}
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	text := out.String()
	if heredocs != 4 {
		t.Fatalf("dev help incomplete:\n%s", text)
	}
	admin := regexp.MustCompile(`Admin:\s+(http://\S+)/healthz`).FindStringSubmatch(text)
	if admin == nil {
		t.Fatalf("no admin address in:\n%s", text)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(admin[1] + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s: %s", p, resp.Status)
		}
	}

	re := regexp.MustCompile(`(?s)#    expect: status\.code (\d+) [^\n]*\n\S.*? -plaintext -d @ (\S+) envoy\.service\.auth\.v3\.Authorization/Check <<'EOF'\n(.*?)\nEOF`)
	matches := re.FindAllStringSubmatch(text, -1)
	if len(matches) != 4 {
		t.Fatalf("found %d commands, want 4:\n%s", len(matches), text)
	}
	conn, err := grpc.NewClient(matches[0][2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Readiness reaches the gRPC health service within its polling interval.
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && hc.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("gRPC health never SERVING: %v %v", hc, err)
		}
	}
	client := authv3.NewAuthorizationClient(conn)
	for i, m := range matches {
		var req authv3.CheckRequest
		if err := protojson.Unmarshal([]byte(m[3]), &req); err != nil {
			t.Fatalf("command %d: printed JSON is not a CheckRequest: %v", i+1, err)
		}
		resp, err := client.Check(ctx, &req)
		if err != nil {
			t.Fatalf("command %d: %v", i+1, err)
		}
		want, _ := strconv.Atoi(m[1])
		if got := int(resp.GetStatus().GetCode()); got != want {
			t.Errorf("command %d: status.code %d, printed expectation %d", i+1, got, want)
		}
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("serve exited %d", code)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve did not stop after cancellation")
	}
}

func TestValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(`authenticate:
  oidc: [{issuer: "https://i.example", audiences: [a]}]
  user: {identity: 'request.headers["x-user"]'}
authorize:
  handlers:
    - on: thread
    - on: store
      allow: value.namespace[0] = user.identity
`), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"validate", "--config", bad}, &stdout, &stderr); code != exitFail {
		t.Fatalf("exit %d, want %d", code, exitFail)
	}
	for _, want := range []string{
		// A user mapping sees only the claims: the request is a handler's.
		bad + `:3:21: CEL: undeclared reference to 'request'`,
		bad + `:6:7: handler "thread": unknown resource "thread"`,
		bad + `:8:33: CEL: Syntax error: token recognition error at: '= '`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	stderr.Reset()
	t.Setenv("OIDC_ISSUER", "https://idp.example.com")
	t.Setenv("OIDC_AUDIENCE", "langgraph")
	if code := run(context.Background(), []string{"validate", "--config", "../../examples/langgraph/langgate.yaml"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("example does not validate: %s", stderr.String())
	}
	if code := run(context.Background(), []string{"validate"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("validate without --config: exit %d, want %d", code, exitUsage)
	}
	if code := run(context.Background(), []string{"bogus"}, &stdout, &stderr); code != exitUsage {
		t.Errorf("unknown command: exit %d", code)
	}
}

func TestHashKey(t *testing.T) {
	var out, errb bytes.Buffer
	if err := hashKey(nil, strings.NewReader("s3cret\n"), &out, &errb); err != nil {
		t.Fatal(err)
	}
	// printf %s s3cret | sha256sum
	if got := strings.TrimSpace(out.String()); got != "sha256:1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0" {
		t.Errorf("hash %q", got)
	}
	out.Reset()
	if err := hashKey([]string{"--generate"}, strings.NewReader(""), &out, &errb); err != nil || !strings.Contains(out.String(), "hash: sha256:") {
		t.Errorf("--generate: %v %q", err, out.String())
	}
	if err := hashKey([]string{"key-on-argv"}, strings.NewReader(""), &out, &errb); err == nil {
		t.Error("a key on the command line was accepted")
	}
	if err := hashKey(nil, strings.NewReader(""), &out, &errb); err == nil {
		t.Error("an empty key was hashed")
	}
}

// TestServeRefusesBadTracingSettings: a typo in an OTEL_* variable stops
// serve before it listens, naming the variable, instead of a silent
// fallback.
func TestServeRefusesBadTracingSettings(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
	t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_traceidratio")
	t.Setenv("OTEL_TRACES_SAMPLER_ARG", "10%")
	var stderr strings.Builder
	code := run(context.Background(), []string{"serve", "--dev", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, io.Discard, &stderr)
	if code == 0 || !strings.Contains(stderr.String(), `OTEL_TRACES_SAMPLER_ARG="10%"`) {
		t.Fatalf("exit %d, stderr %q; want a failure naming OTEL_TRACES_SAMPLER_ARG", code, stderr.String())
	}
}

// TestServeRefusesBadLimits: every bound on what clients can make langgate
// hold must be a usable value; a bad one stops serve with a usage error
// naming it, before any port opens.
func TestServeRefusesBadLimits(t *testing.T) {
	for _, c := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--grpc-max-streams", "0"}, "--grpc-max-streams"},
		{[]string{"--grpc-check-timeout", "0s"}, "--grpc-check-timeout"},
		{[]string{"--http-max-conns", "0"}, "--http-max-conns"},
		{[]string{"--http-idle-timeout", "-1s"}, "--http-idle-timeout"},
		{[]string{"--http-body-bytes-in-flight", "0"}, "--http-body-bytes-in-flight"},
		{[]string{"--memory-limit", "lots"}, "--memory-limit"},
	} {
		var stderr strings.Builder
		args := append([]string{"serve", "--dev", "--grpc-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, c.flags...)
		if code := run(context.Background(), args, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 naming %s", c.flags, code, stderr.String(), c.want)
		}
	}
}
