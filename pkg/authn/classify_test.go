package authn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/config"
)

// TestVerifyReasonByType: each key set failure is classified by its
// sentinel, however deeply it is wrapped and whatever its text says.
func TestVerifyReasonByType(t *testing.T) {
	for _, c := range []struct {
		err    error
		reason string
		kind   Kind
	}{
		{errNoKeys, "issuer has no keys yet", KindUnavailable},
		{errBadSignature, "bad signature", KindInvalid},
		{errUnknownKey, "unknown signing key", KindInvalid},
		{errAlgMismatch, "algorithm does not match the key", KindInvalid},
		{errAlgNotAllowed, "algorithm not allowed", KindInvalid},
		{errMalformedJWS, "malformed token", KindInvalid},
		{errors.New("signature does not verify"), "verification failed", KindInvalid}, // same text, not the sentinel
	} {
		wrapped := fmt.Errorf("outer: %w", fmt.Errorf("inner: %w", c.err))
		if reason, kind := verifyReason(wrapped); reason != c.reason || kind != c.kind {
			t.Errorf("%v: got %q %v, want %q %v", c.err, reason, kind, c.reason, c.kind)
		}
	}
}

// TestKeySetVerifyErrors: what the key set answers for tokens that fail
// before any key is tried carries the sentinel the classification reads.
func TestKeySetVerifyErrors(t *testing.T) {
	ks := newKeySet(http.DefaultClient, verifyAlgs, time.Minute, time.Now, slog.New(slog.DiscardHandler))
	hs := "eyJhbGciOiJIUzI1NiJ9.e30.c2ln" // {"alg":"HS256"}.{}.sig
	for _, c := range []struct {
		token string
		algs  []jose.SignatureAlgorithm
		want  error
	}{
		{"a.b", verifyAlgs, errMalformedJWS},
		{"!!.!!.!!", verifyAlgs, errMalformedJWS},
		{hs, []jose.SignatureAlgorithm{jose.RS256}, errAlgNotAllowed},
		{"eyJhbGciOiJSUzI1NiJ9.e30.c2ln", []jose.SignatureAlgorithm{jose.RS256}, errNoKeys},
	} {
		_, err := ks.verify(context.Background(), c.token, c.algs)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.token, err, c.want)
		}
	}
}

// TestDiscovery: discovery goes through go-oidc, bounded in size, and
// refuses a document naming another issuer or an insecure jwks_uri.
func TestDiscovery(t *testing.T) {
	var doc string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, doc)
	}))
	t.Cleanup(srv.Close)
	iss := newIssuer(config.OIDCIssuer{Issuer: srv.URL}, srv.Client(), time.Now, time.Minute, slog.New(slog.DiscardHandler))
	for _, c := range []struct {
		name, doc, want, err string
	}{
		{"good", `{"issuer":"` + srv.URL + `","jwks_uri":"` + srv.URL + `/jwks"}`, srv.URL + "/jwks", ""},
		{"other issuer", `{"issuer":"https://evil.example","jwks_uri":"` + srv.URL + `/jwks"}`, "", `names issuer "https://evil.example"`},
		{"plain http jwks", `{"issuer":"` + srv.URL + `","jwks_uri":"http://keys.example.com/jwks"}`, "", "must use https"},
		{"too large", `{"issuer":"` + srv.URL + `","pad":"` + strings.Repeat("x", MaxDiscoveryBytes) + `"}`, "", "larger than 1048576 bytes"},
		{"not JSON", `<html>`, "", "discovery"},
	} {
		doc = c.doc
		got, err := iss.discover(context.Background())
		switch {
		case c.err == "" && (err != nil || got != c.want):
			t.Errorf("%s: %q %v, want %q", c.name, got, err, c.want)
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.err)
		}
	}
}
