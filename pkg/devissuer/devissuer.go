// Package devissuer is a small, real OpenID Connect issuer for development
// and tests: discovery, a JWKS endpoint, a token endpoint that mints
// signed access tokens for any named user, and RFC 7662 introspection of
// opaque tokens. It exists so `langgate serve --dev` and the test suite
// exercise the same discovery and key-fetch code as production. Fault
// injection and request counting for tests live in devissuertest, outside
// the shipped binary. It must never be exposed beyond loopback: anyone who can
// reach its token endpoint can mint tokens.
package devissuer

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultAudience is the audience dev tokens carry unless asked otherwise.
const DefaultAudience = "langgate-dev"

// The issuer's endpoints.
const (
	DiscoveryPath     = "/.well-known/openid-configuration"
	JWKSPath          = "/jwks"
	IntrospectionPath = "/introspect"
	TokenPath         = "/token"
	AuthorizePath     = "/authorize"
)

// Issuer is a running development OIDC issuer.
type Issuer struct {
	// URL is the issuer URL (http://127.0.0.1:PORT).
	URL string
	// Audience is the default `aud` of minted tokens.
	Audience string

	srv *http.Server
	ln  net.Listener

	mu   sync.RWMutex
	keys []jose.JSONWebKey // private keys; the first one signs
	now  func() time.Time

	clientID, clientSecret string
	opaque                 map[string]map[string]any // opaque token → claims
}

// DefaultClientID and DefaultClientSecret authenticate callers of the
// introspection endpoint unless Options say otherwise.
const (
	DefaultClientID     = "langgate-dev"
	DefaultClientSecret = "langgate-dev-secret" //nolint:gosec // a development issuer's published test secret, never a real one
)

// Options configure an Issuer.
type Options struct {
	// Addr is the listen address; it must be a loopback address
	// ("127.0.0.1:0" picks a free port).
	Addr string
	// Audience is the default audience ("langgate-dev").
	Audience string
	// Algorithm is RS256 (default), ES256 or EdDSA.
	Algorithm jose.SignatureAlgorithm
	// Now is the clock for iat/exp (time.Now).
	Now func() time.Time
	// ClientID and ClientSecret authenticate callers of the introspection
	// endpoint (DefaultClientID, DefaultClientSecret).
	ClientID, ClientSecret string
	// Wrap, when set, wraps the issuer's HTTP handler (to log its
	// requests; the tests' fault injection in devissuertest is one).
	Wrap func(http.Handler) http.Handler
}

// Start listens on a loopback address and serves the issuer.
func Start(opts Options) (*Issuer, error) {
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.Audience == "" {
		opts.Audience = DefaultAudience
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	host, _, err := net.SplitHostPort(opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return nil, fmt.Errorf("devissuer: refusing to listen on non-loopback address %q", opts.Addr)
	}
	key, err := NewKey(opts.Algorithm, "dev-1")
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("devissuer: %w", err)
	}
	if opts.ClientID == "" {
		opts.ClientID, opts.ClientSecret = DefaultClientID, DefaultClientSecret
	}
	is := &Issuer{URL: "http://" + ln.Addr().String(), Audience: opts.Audience, ln: ln, keys: []jose.JSONWebKey{key}, now: opts.Now,
		clientID: opts.ClientID, clientSecret: opts.ClientSecret, opaque: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+DiscoveryPath, is.discovery)
	mux.HandleFunc("GET "+JWKSPath, is.jwks)
	mux.HandleFunc("POST "+IntrospectionPath, is.introspect)
	mux.HandleFunc(TokenPath, is.token)
	mux.HandleFunc(AuthorizePath, is.authorize)
	var h http.Handler = mux
	if opts.Wrap != nil {
		h = opts.Wrap(h)
	}
	is.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = is.srv.Serve(ln) }()
	return is, nil
}

// NewKey generates a private signing key for alg (RS256 when empty).
func NewKey(alg jose.SignatureAlgorithm, kid string) (jose.JSONWebKey, error) {
	var priv any
	var err error
	switch alg {
	case "", jose.RS256:
		alg = jose.RS256
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		var k ed25519.PrivateKey
		_, k, err = ed25519.GenerateKey(rand.Reader)
		priv = k
	default:
		return jose.JSONWebKey{}, fmt.Errorf("devissuer: unsupported algorithm %s", alg)
	}
	if err != nil {
		return jose.JSONWebKey{}, fmt.Errorf("devissuer: generating key: %w", err)
	}
	return jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg), Use: "sig"}, nil
}

// Close stops the issuer.
func (is *Issuer) Close() error { return is.srv.Close() }

// SigningKey returns the private key that signs new tokens.
func (is *Issuer) SigningKey() jose.JSONWebKey {
	is.mu.RLock()
	defer is.mu.RUnlock()
	return is.keys[0]
}

// SetKeys replaces the key set; the first key signs from now on (a key
// rotation, for programs that embed the issuer; langgate serve --dev never
// rotates).
func (is *Issuer) SetKeys(keys ...jose.JSONWebKey) {
	is.mu.Lock()
	is.keys = keys
	is.mu.Unlock()
}

// IntrospectionURL is the RFC 7662 introspection endpoint.
func (is *Issuer) IntrospectionURL() string { return is.URL + IntrospectionPath }

// OpaqueToken mints an opaque (random, non-JWT) access token for subject,
// valid for ttl, that only the introspection endpoint can resolve. Extra
// claims override the defaults; a nil value removes one.
func (is *Issuer) OpaqueToken(subject string, ttl time.Duration, extra map[string]any) (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	tok := "dev_at_" + base64.RawURLEncoding.EncodeToString(b[:])
	now := is.now()
	claims := map[string]any{
		"iss": is.URL, "sub": subject, "aud": is.Audience, "client_id": is.clientID,
		"scope": "threads assistants store", "token_type": "Bearer",
		"iat": now.Unix(), "exp": now.Add(ttl).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	is.mu.Lock()
	is.opaque[tok] = claims
	is.mu.Unlock()
	return tok, nil
}

// Revoke makes an opaque token inactive.
func (is *Issuer) Revoke(token string) {
	is.mu.Lock()
	delete(is.opaque, token)
	is.mu.Unlock()
}

// introspect answers RFC 7662 requests from the configured client, with
// client_secret_basic or client_secret_post.
func (is *Issuer) introspect(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if subtle.ConstantTimeCompare([]byte(id), []byte(is.clientID)) != 1 || subtle.ConstantTimeCompare([]byte(secret), []byte(is.clientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="devissuer"`)
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	}
	tok := r.PostForm.Get("token")
	is.mu.RLock()
	claims, found := is.opaque[tok]
	is.mu.RUnlock()
	if !found {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	if exp, ok := unixSeconds(claims["exp"]); ok && is.now().Unix() >= exp {
		writeJSON(w, map[string]any{"active": false})
		return
	}
	out := map[string]any{"active": true}
	for k, v := range claims {
		out[k] = v
	}
	writeJSON(w, out)
}

func unixSeconds(v any) (int64, bool) {
	switch n := v.(type) {
	case int64:
		return n, true
	case int:
		return int64(n), true
	case float64:
		return int64(n), true
	}
	return 0, false
}

// Token mints an access token for subject, valid for ttl, with the default
// audience and any extra claims (which override the defaults).
func (is *Issuer) Token(subject string, ttl time.Duration, extra map[string]any) (string, error) {
	return is.Sign(is.Claims(subject, ttl, extra))
}

// Claims returns the claims Token signs — iss, sub, aud, iat, nbf, exp,
// name, scope — with extra applied (a nil value deletes a claim), for
// tests that sign them some other way.
func (is *Issuer) Claims(subject string, ttl time.Duration, extra map[string]any) map[string]any {
	now := is.now()
	claims := map[string]any{
		"iss":   is.URL,
		"sub":   subject,
		"aud":   is.Audience,
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
		"name":  strings.ToUpper(subject[:min(1, len(subject))]) + subject[min(1, len(subject)):],
		"scope": "threads assistants store",
	}
	for k, v := range extra {
		if v == nil {
			delete(claims, k)
			continue
		}
		claims[k] = v
	}
	return claims
}

// Sign signs arbitrary claims with the current signing key.
func (is *Issuer) Sign(claims map[string]any) (string, error) {
	return SignWith(is.SigningKey(), claims)
}

// SignWith signs claims with key as a compact JWS of type JWT.
func SignWith(key jose.JSONWebKey, claims map[string]any) (string, error) {
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(key.Algorithm), Key: key},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	return jwt.Signed(signer).Claims(claims).Serialize()
}

func (is *Issuer) discovery(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{
		"issuer":                                is.URL,
		"jwks_uri":                              is.URL + JWKSPath,
		"token_endpoint":                        is.URL + TokenPath,
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{is.SigningKey().Algorithm},
		"introspection_endpoint":                is.IntrospectionURL(),
		// OAuth clients (an MCP client's discovery) want an authorization
		// endpoint listed; the dev issuer has no login page, and answers
		// there that its tokens come from client_credentials.
		"authorization_endpoint":                is.URL + AuthorizePath,
		"grant_types_supported":                 []string{"client_credentials"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

// authorize refuses the authorization code flow: the dev issuer has no
// login page (RFC 6749 section 4.1.2.1's error, shown to the user).
func (is *Issuer) authorize(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write([]byte(`{"error":"unsupported_response_type","error_description":"the dev issuer has no login: get a token with grant_type=client_credentials (the client_id is the subject) or GET /token?sub=NAME"}` + "\n"))
}

func (is *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	is.mu.RLock()
	set := jose.JSONWebKeySet{}
	for _, k := range is.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	is.mu.RUnlock()
	writeJSON(w, set)
}

// token mints a token: GET or POST /token?sub=alice[&aud=...][&ttl=1h];
// or, as an OAuth client gets one, POST grant_type=client_credentials
// (RFC 6749 section 4.4): the client_id is the subject, the secret the
// issuer's client secret (client_secret_basic or _post), the RFC 8707
// resource the audience, the scope the scope.
func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodPost && r.PostForm.Get("grant_type") != "" {
		is.clientCredentials(w, r)
		return
	}
	sub := r.Form.Get("sub")
	if sub == "" {
		http.Error(w, "sub is required", http.StatusBadRequest)
		return
	}
	ttl := time.Hour
	if s := r.Form.Get("ttl"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			http.Error(w, "bad ttl", http.StatusBadRequest)
			return
		}
		ttl = d
	}
	extra := map[string]any{}
	if aud := r.Form.Get("aud"); aud != "" {
		extra["aud"] = aud
	}
	tok, err := is.Token(sub, ttl, extra)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(ttl.Seconds())})
}

// clientCredentials is the token endpoint's OAuth grant.
func (is *Issuer) clientCredentials(w http.ResponseWriter, r *http.Request) {
	oauthError := func(status int, code, desc string) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": code, "error_description": desc})
	}
	if g := r.PostForm.Get("grant_type"); g != "client_credentials" {
		oauthError(http.StatusBadRequest, "unsupported_grant_type", "the dev issuer grants client_credentials only")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(is.clientSecret)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="devissuer"`)
		oauthError(http.StatusUnauthorized, "invalid_client", "any client_id, with the dev issuer's client secret")
		return
	}
	extra := map[string]any{}
	if res := r.PostForm["resource"]; len(res) > 1 {
		oauthError(http.StatusBadRequest, "invalid_target", "one resource per token")
		return
	} else if len(res) == 1 {
		extra["aud"] = res[0]
	}
	scope := r.PostForm.Get("scope")
	if scope != "" {
		extra["scope"] = scope
	}
	ttl := time.Hour
	tok, err := is.Token(id, ttl, extra)
	if err != nil {
		oauthError(http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	resp := map[string]any{"access_token": tok, "token_type": "Bearer", "expires_in": int(ttl.Seconds())}
	if scope != "" {
		resp["scope"] = scope
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, resp)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}
