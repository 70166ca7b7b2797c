package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"time"

	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/devissuer"
)

// grpcurlModule is the pinned grpcurl the dev help falls back to when no
// grpcurl is on PATH; `go run` fetches it from the module proxy.
const grpcurlModule = "github.com/fullstorydev/grpcurl/cmd/grpcurl@v1.9.3"

// devTokenTTL is long enough to paste the printed commands all day.
const devTokenTTL = 24 * time.Hour

// devExample is one ready-to-paste check.
type devExample struct {
	Title  string
	Expect string
	Method string
	Path   string
	Token  string
	Body   string
}

// printDevHelp waits until the dev issuer's keys are loaded, then prints
// commands that show an allowed and a denied decision for two users.
func printDevHelp(ctx context.Context, w io.Writer, dev *devissuer.Issuer, engines *decision.Holder, grpcAddr, adminAddr string) {
	if !waitReady(ctx, engines, 30*time.Second) {
		fmt.Fprintln(w, "langgate --dev: the embedded issuer's keys did not load; see the log")
		return
	}
	alice, err1 := dev.Token("alice", devTokenTTL, nil)
	bob, err2 := dev.Token("bob", devTokenTTL, nil)
	if err1 != nil || err2 != nil {
		fmt.Fprintln(w, "langgate --dev: minting tokens failed:", err1, err2)
		return
	}
	fmt.Fprint(w, DevHelp(dev.URL, hostPort(grpcAddr), hostPort(adminAddr), grpcurlCommand(), DevExamples(alice, bob)))
}

// DevExamples are the checks --dev prints, for users alice and bob.
func DevExamples(alice, bob string) []devExample {
	aliceNote := `{"namespace":["alice","notes"],"key":"k1","value":{"text":"hi"}}`
	return []devExample{
		{Title: "alice creates a thread: allowed, metadata.owner stamped, reads filtered by owner",
			Expect: `status.code 0 (OK); okResponse sets x-langgate-metadata {"owner":"alice"} and x-langgate-filters {"owner":"alice"}`,
			Method: "POST", Path: "/threads", Token: alice, Body: `{"metadata":{"topic":"demo"}}`},
		{Title: "alice writes to her own store namespace: allowed",
			Expect: "status.code 0 (OK); x-langgate-user-id alice",
			Method: "PUT", Path: "/store/items", Token: alice, Body: aliceNote},
		{Title: "bob writes to alice's store namespace: denied",
			Expect: `status.code 7 (PERMISSION_DENIED); deniedResponse 403 {"detail":"Not authorized"}`,
			Method: "PUT", Path: "/store/items", Token: bob, Body: aliceNote},
		{Title: "no token: denied",
			Expect: `status.code 16 (UNAUTHENTICATED); deniedResponse 401 {"detail":"Missing authentication token"}`,
			Method: "GET", Path: "/threads/123"},
	}
}

// DevHelp renders the --dev instructions.
func DevHelp(issuer, grpcAddr, adminAddr, grpcurl string, examples []devExample) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
langgate is running in DEV mode.
  Check (gRPC):     %s   (envoy.service.auth.v3.Authorization/Check, health, reflection)
  Admin:            http://%s/healthz  http://%s/readyz
  Dev OIDC issuer:  %s   (audience %q; it mints tokens for anyone on this machine: never expose it)
  Policy:           examples/langgraph/langgate.yaml (LangGraph's seed: owner isolation + store namespaces)

Mint a token for any user:
  curl -s '%s/token?sub=carol'

Try these (paste into a shell; tokens are valid for %s):
`, grpcAddr, adminAddr, adminAddr, issuer, devissuer.DefaultAudience, issuer, devTokenTTL)
	for i, ex := range examples {
		fmt.Fprintf(&b, "\n# %d. %s\n#    expect: %s\n", i+1, ex.Title, ex.Expect)
		fmt.Fprintf(&b, "%s -plaintext -d @ %s envoy.service.auth.v3.Authorization/Check <<'EOF'\n%s\nEOF\n", grpcurl, grpcAddr, CheckJSON(ex))
	}
	b.WriteString("\n")
	return b.String()
}

// CheckJSON renders a CheckRequest in the JSON form grpcurl reads.
func CheckJSON(ex devExample) string {
	headers := map[string]string{":method": ex.Method, ":path": ex.Path, "x-request-id": "dev-example"}
	if ex.Token != "" {
		headers["authorization"] = "Bearer " + ex.Token
	}
	httpReq := map[string]any{"method": ex.Method, "path": ex.Path, "headers": headers}
	if ex.Body != "" {
		httpReq["body"] = ex.Body
		headers["content-type"] = "application/json"
		headers["content-length"] = fmt.Sprint(len(ex.Body))
	}
	out, _ := json.MarshalIndent(map[string]any{"attributes": map[string]any{"request": map[string]any{"http": httpReq}}}, "", "  ")
	return string(out)
}

func grpcurlCommand() string {
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	return "go run " + grpcurlModule
}

// hostPort turns a listen address (":9001", "[::]:9001") into one a client
// on this machine can dial.
func hostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}
