package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/langgate/langgate/internal/testproc"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/devissuer/devissuertest"
)

// TestMain lets tests run this binary as the real command in a subprocess
// (signals, exit codes, logs on stderr).
func TestMain(m *testing.M) {
	if os.Getenv("LANGGATE_TEST_AS_COMMAND") == "1" {
		ctx, stop := signalContext()
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// TestSIGTERMDrains runs `langgate serve` as a process: on SIGTERM it turns
// not ready first (admin and gRPC health), keeps answering checks during the
// drain delay, then exits 0. Its JSON logs never contain the token.
func TestSIGTERMDrains(t *testing.T) {
	is, err := devissuertest.New(devissuer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	token := is.MustToken(t, "alice", time.Hour, nil)
	// Long enough that the checks below land inside it on a loaded
	// machine; the exit is asserted not to come before it.
	const drain = 3 * time.Second
	grpcAddr, adminAddr := testproc.FreeAddr(t), testproc.FreeAddr(t)
	cmd := exec.Command(os.Args[0], "serve", "--config", "../../examples/langgraph/langgate.yaml",
		"--grpc-addr", grpcAddr, "--admin-addr", adminAddr, "--drain-delay", drain.String(), "--log-allows")
	cmd.Env = append(os.Environ(), "LANGGATE_TEST_AS_COMMAND=1", "OIDC_ISSUER="+is.URL, "OIDC_AUDIENCE="+is.Audience)
	var stderr testproc.SyncBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill() //nolint:errcheck // a no-op once it has exited

	admin := "http://" + adminAddr
	testproc.WaitFor(t, 10*time.Second, func() bool { return testproc.HTTPStatus(admin+"/readyz") == 200 }, "never ready")
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := authv3.NewAuthorizationClient(conn)
	check := func(tok string) (int32, error) {
		resp, err := client.Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{
			Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/threads/1", Headers: map[string]string{"authorization": "Bearer " + tok}}}}})
		return resp.GetStatus().GetCode(), err
	}
	if c, err := check(token); err != nil || c != 0 {
		t.Fatalf("check before shutdown: %d %v", c, err)
	}
	if c, _ := check(token + "x"); c != 16 {
		t.Fatalf("bad token: code %d", c)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	termed := time.Now()
	testproc.WaitFor(t, 2*time.Second, func() bool { return testproc.HTTPStatus(admin+"/readyz") == 503 }, "readiness did not turn false on SIGTERM")
	hc, err := healthpb.NewHealthClient(conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health during drain: %v %v", hc, err)
	}
	// Not ready, yet still deciding: in-flight and late requests finish.
	if c, err := check(token); err != nil || c != 0 {
		t.Errorf("check during the drain delay: %d %v", c, err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit: %v (want status 0)\n%s", err, stderr.String())
		}
		if took := time.Since(termed); took < drain {
			t.Errorf("exited %s after SIGTERM, before the drain delay of %s", took, drain)
		}
	case <-time.After(10*time.Second + drain):
		t.Fatal("did not exit after SIGTERM")
	}

	// Logs: JSON lines; one decision line per check (allows are on); the
	// token appears nowhere.
	var decisions int
	sc := bufio.NewScanner(strings.NewReader(stderr.String()))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		if rec["msg"] == "decision" {
			decisions++
			if rec["decision_id"] == "" || rec["outcome"] == nil {
				t.Errorf("decision line lacks fields: %v", rec)
			}
		}
	}
	if decisions != 3 {
		t.Errorf("%d decision lines, want 3:\n%s", decisions, stderr.String())
	}
	parts := strings.Split(token, ".")
	for _, secret := range append(parts, token) {
		if strings.Contains(stderr.String(), secret) {
			t.Fatalf("the token (or a part of it) is in the logs")
		}
	}
}
