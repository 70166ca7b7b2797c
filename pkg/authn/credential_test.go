package authn_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/devissuer"
)

// TestCredentialLocations: the credential is taken from the first
// configured location present, in order; a header with another scheme is
// not "present"; a present but malformed credential is refused, never
// skipped; each location accepts only its type.
func TestCredentialLocations(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	key, hash, err := authn.GenerateAPIKey()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KEYS": `[{hash: "` + hash + `", identity: ci-bot, permissions: [threads]}]`}
	a, _ := compile(t, `authenticate:
  credentials:
    - {header: authorization, scheme: Bearer}
    - {header: x-api-key, type: api_key}
    - {cookie: session, type: token}
    - {query: access_token, insecure_allow_query: true, type: token}
  oidc: [{issuer: `+is.URL+`, audiences: [`+is.Audience+`]}]
  api_keys: {env: KEYS}
  user: {identity: claims.sub}
`, authn.Options{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }})
	waitReady(t, a, 5*time.Second)
	jwt := is.MustToken(t, "alice", time.Hour, nil)

	tests := []struct {
		name     string
		headers  map[string]string
		query    string
		identity string // "" expects an error
		reason   string
		kind     authn.Kind
	}{
		{"bearer JWT", map[string]string{"authorization": "Bearer " + jwt}, "", "alice", "", 0},
		{"bearer scheme in lower case", map[string]string{"authorization": "bearer " + jwt}, "", "alice", "", 0},
		{"API key as a bearer token", map[string]string{"authorization": "Bearer " + key}, "", "ci-bot", "", 0},
		{"API key header", map[string]string{"x-api-key": key}, "", "ci-bot", "", 0},
		{"Basic falls through to the API key header", map[string]string{"authorization": "Basic YTpi", "x-api-key": key}, "", "ci-bot", "", 0},
		{"Basic and nothing else", map[string]string{"authorization": "Basic YTpi"}, "", "", "authorization scheme is not Bearer", authn.KindInvalid},
		{"authorization wins over the cookie", map[string]string{"authorization": "Bearer " + key, "cookie": "session=" + jwt}, "", "ci-bot", "", 0},
		{"session cookie", map[string]string{"cookie": "theme=dark; session=" + jwt + "; lang=en"}, "", "alice", "", 0},
		{"quoted cookie", map[string]string{"cookie": `session="` + jwt + `"`}, "", "alice", "", 0},
		{"cookie twice, different values", map[string]string{"cookie": "session=" + jwt + "; session=x.y.z"}, "", "", "session cookie appears twice with different values", authn.KindInvalid},
		{"cookie headers joined by Envoy with a comma", map[string]string{"cookie": "a=b, session=" + jwt}, "", "alice", "", 0},
		{"query parameter", nil, "access_token=" + jwt, "alice", "", 0},
		{"query parameter twice", nil, "access_token=" + jwt + "&access_token=" + jwt, "", "access_token query parameter given more than once", authn.KindInvalid},
		{"an API key where only tokens go", map[string]string{"cookie": "session=" + key}, "", "", "malformed token", authn.KindInvalid},
		{"a JWT where only API keys go", map[string]string{"x-api-key": jwt}, "", "", "unknown API key", authn.KindInvalid},
		{"unknown API key", map[string]string{"x-api-key": "lg_nope"}, "", "", "unknown API key", authn.KindInvalid},
		{"space in an API key", map[string]string{"x-api-key": "lg_a b"}, "", "", "x-api-key header has characters not allowed in a credential", authn.KindInvalid},
		{"comma (two joined headers)", map[string]string{"x-api-key": key + "," + key}, "", "", "x-api-key header has characters not allowed in a credential", authn.KindInvalid},
		{"empty bearer", map[string]string{"authorization": "Bearer "}, "", "", "empty bearer token", authn.KindInvalid},
		{"oversized", map[string]string{"x-api-key": strings.Repeat("k", 20<<10)}, "", "", "token too large", authn.KindInvalid},
		{"nothing", map[string]string{"user-agent": "x"}, "", "", "no credential: no authorization header, no x-api-key header, no session cookie, no access_token query parameter", authn.KindMissing},
		{"empty header counts as absent", map[string]string{"authorization": ""}, "", "", "no credential: no authorization header", authn.KindMissing},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			u, err := a.AuthenticateRequest(context.Background(), tc.headers, q)
			if tc.identity != "" {
				if err != nil || u.Identity != tc.identity {
					t.Fatalf("got %v, %v; want %s", u, err, tc.identity)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted as %s", u.Identity)
			}
			if kind(err) != tc.kind || !strings.HasPrefix(reason(err), tc.reason) {
				t.Errorf("got %v (kind %s, reason %q); want %s %q", err, kind(err), reason(err), tc.kind, tc.reason)
			}
		})
	}
}

// TestDefaultCredentialLocation: without `credentials`, only the
// Authorization header counts, as before.
func TestDefaultCredentialLocation(t *testing.T) {
	is := startIssuer(t, devissuer.Options{})
	a := newAuthenticator(t, is.URL, is.Audience, authn.Options{})
	waitReady(t, a, 5*time.Second)
	jwt := is.MustToken(t, "alice", time.Hour, nil)
	if u, err := a.AuthenticateRequest(context.Background(), map[string]string{"authorization": "Bearer " + jwt}, nil); err != nil || u.Identity != "alice" {
		t.Fatalf("%v %v", u, err)
	}
	for _, h := range []map[string]string{{"cookie": "session=" + jwt}, {"x-api-key": jwt}, {}} {
		_, err := a.AuthenticateRequest(context.Background(), h, url.Values{"access_token": {jwt}})
		if kind(err) != authn.KindMissing || reason(err) != "no authorization header" {
			t.Errorf("%v: %v", h, err)
		}
	}
}

// FuzzCredential: whatever the Authorization, x-api-key and Cookie headers
// and the query hold, nothing but the one real API key is accepted, every
// refusal is a typed error, and nothing panics.
func FuzzCredential(f *testing.F) {
	key, hash, err := authn.GenerateAPIKey()
	if err != nil {
		f.Fatal(err)
	}
	keys := `[{hash: "` + hash + `", identity: ci}]`
	a, _ := compile(f, `authenticate:
  credentials:
    - {header: authorization, scheme: Bearer}
    - {header: x-api-key, type: api_key}
    - {cookie: session}
    - {query: key, insecure_allow_query: true}
  api_keys: {env: KEYS}
`, authn.Options{LookupEnv: func(string) (string, bool) { return keys, true }})
	f.Add("Bearer "+key, "", "", "")
	f.Add("Basic x", key, "", "")
	f.Add("", "", "a=b; session="+key, "")
	f.Add("", "", "", "key="+key)
	f.Add("Bearer a.b.c", key+","+key, "session=1; session=2", "key=1&key=2")
	f.Fuzz(func(t *testing.T, authz, apiKey, cookie, rawQuery string) {
		h := map[string]string{}
		for k, v := range map[string]string{"authorization": authz, "x-api-key": apiKey, "cookie": cookie} {
			if v != "" {
				h[k] = v
			}
		}
		q, _ := url.ParseQuery(rawQuery)
		u, err := a.AuthenticateRequest(context.Background(), h, q)
		if err != nil {
			if _, ok := authn.AsError(err); !ok {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if u.Identity != "ci" {
			t.Fatalf("accepted as %q", u.Identity)
		}
		if !strings.Contains(authz+apiKey+cookie+rawQuery, key) {
			t.Fatalf("accepted without the key: %q %q %q %q", authz, apiKey, cookie, rawQuery)
		}
	})
}
