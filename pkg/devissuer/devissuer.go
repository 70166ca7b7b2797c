// Package devissuer is a small, real OpenID Connect issuer for development
// and tests: discovery, a JWKS endpoint and a token endpoint that mints
// signed access tokens for any named user. It exists so `langgate serve
// --dev` and the test suite exercise the same discovery and key-fetch code
// as production. It must never be exposed beyond loopback: anyone who can
// reach its token endpoint can mint tokens.
package devissuer

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DefaultAudience is the audience dev tokens carry unless asked otherwise.
const DefaultAudience = "langgate-dev"

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

	// Fault injection and observation for tests.
	cacheControl string
	failStatus   int
	delay        time.Duration
	jwksHits     atomic.Uint64
	introHits    atomic.Uint64

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
	mux.HandleFunc("GET /.well-known/openid-configuration", is.faulty(is.discovery))
	mux.HandleFunc("GET /jwks", is.faulty(is.jwks))
	mux.HandleFunc("POST /introspect", is.faulty(is.introspect))
	mux.HandleFunc("/token", is.token)
	is.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

// SetKeys replaces the key set; the first key signs from now on. Tests use
// it to rotate keys.
func (is *Issuer) SetKeys(keys ...jose.JSONWebKey) {
	is.mu.Lock()
	is.keys = keys
	is.mu.Unlock()
}

// SetJWKSCacheControl sets the Cache-Control header of the JWKS response
// ("" sends none).
func (is *Issuer) SetJWKSCacheControl(v string) {
	is.mu.Lock()
	is.cacheControl = v
	is.mu.Unlock()
}

// SetFailure makes discovery, JWKS and introspection answer with an HTTP
// status (an outage); 0 heals it.
func (is *Issuer) SetFailure(status int) {
	is.mu.Lock()
	is.failStatus = status
	is.mu.Unlock()
}

// SetDelay makes discovery, JWKS and introspection wait d before answering
// (a slow provider), or until the caller gives up; 0 removes it.
func (is *Issuer) SetDelay(d time.Duration) {
	is.mu.Lock()
	is.delay = d
	is.mu.Unlock()
}

// JWKSRequests counts requests to the JWKS endpoint.
func (is *Issuer) JWKSRequests() uint64 { return is.jwksHits.Load() }

// IntrospectionRequests counts requests to the introspection endpoint.
func (is *Issuer) IntrospectionRequests() uint64 { return is.introHits.Load() }

// IntrospectionURL is the RFC 7662 introspection endpoint.
func (is *Issuer) IntrospectionURL() string { return is.URL + "/introspect" }

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

// faulty wraps a handler with the injected delay and failure.
func (is *Issuer) faulty(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		is.mu.RLock()
		delay, status := is.delay, is.failStatus
		is.mu.RUnlock()
		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		if status != 0 {
			http.Error(w, "injected failure", status)
			return
		}
		h(w, r)
	}
}

// introspect answers RFC 7662 requests from the configured client, with
// client_secret_basic or client_secret_post.
func (is *Issuer) introspect(w http.ResponseWriter, r *http.Request) {
	is.introHits.Add(1)
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
		"jwks_uri":                              is.URL + "/jwks",
		"token_endpoint":                        is.URL + "/token",
		"response_types_supported":              []string{"token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{is.SigningKey().Algorithm},
		"introspection_endpoint":                is.IntrospectionURL(),
	})
}

func (is *Issuer) jwks(w http.ResponseWriter, _ *http.Request) {
	is.jwksHits.Add(1)
	is.mu.RLock()
	set := jose.JSONWebKeySet{}
	for _, k := range is.keys {
		set.Keys = append(set.Keys, k.Public())
	}
	cc := is.cacheControl
	is.mu.RUnlock()
	if cc != "" {
		w.Header().Set("Cache-Control", cc)
	}
	writeJSON(w, set)
}

// token mints a token: GET or POST /token?sub=alice[&aud=...][&ttl=1h].
func (is *Issuer) token(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
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

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// SignRaw signs claims with key under an arbitrary protected header, for
// attack tests: the header is used as given (add "alg", "kid", "typ",
// "crit", "jku", "jwk" as needed), except that "alg" defaults to the key's
// algorithm. The signature is always made with key's own algorithm, so a
// header that claims another one yields a token whose alg disagrees with
// its key.
func SignRaw(key jose.JSONWebKey, header, claims map[string]any) (string, error) {
	h := map[string]any{"alg": key.Algorithm}
	for k, v := range header {
		h[k] = v
	}
	hj, err := json.Marshal(h)
	if err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	cj, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("devissuer: %w", err)
	}
	input := base64.RawURLEncoding.EncodeToString(hj) + "." + base64.RawURLEncoding.EncodeToString(cj)
	sig, err := rawSign(key, []byte(input))
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

func rawSign(key jose.JSONWebKey, input []byte) ([]byte, error) {
	switch k := key.Key.(type) {
	case *rsa.PrivateKey:
		sum := sha256.Sum256(input)
		sig, err := rsa.SignPKCS1v15(rand.Reader, k, crypto.SHA256, sum[:])
		if err != nil {
			return nil, fmt.Errorf("devissuer: %w", err)
		}
		return sig, nil
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, k, sum[:])
		if err != nil {
			return nil, fmt.Errorf("devissuer: %w", err)
		}
		size := (k.Curve.Params().BitSize + 7) / 8
		out := make([]byte, 2*size)
		r.FillBytes(out[:size])
		s.FillBytes(out[size:])
		return out, nil
	case ed25519.PrivateKey:
		return ed25519.Sign(k, input), nil
	case []byte:
		return nil, fmt.Errorf("devissuer: symmetric keys are not supported")
	default:
		return nil, fmt.Errorf("devissuer: unsupported key type %T", key.Key)
	}
}
