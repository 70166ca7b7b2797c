// Package upstream is what a Go upstream imports to trust langgate: it
// verifies the signed auth context (x-langgate-context) against langgate's
// published keys and checks that it was issued for this request, then
// hands over what langgate authorized (the user, the events and their
// filters). The JS and Python adapters implement the same checks; the
// shared vectors in test/vectors keep the three in step.
package upstream

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/langgate/langgate/pkg/routes"
	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

// Verdicts: why a context is refused. Each is a sentinel error; errors.Is
// tells them apart. The names match the shared vectors' verdicts.
var (
	ErrMalformed  = errors.New("malformed")   // not a compact JWS with a context payload
	ErrAlgorithm  = errors.New("algorithm")   // alg not EdDSA/ES256, or not the key's own
	ErrUnknownKey = errors.New("unknown_key") // no published key has the kid
	ErrSignature  = errors.New("signature")   // the signature does not verify
	ErrExpired    = errors.New("expired")     // past exp (or issued in the future)
	ErrIssuer     = errors.New("issuer")      // iss is not the expected issuer
	ErrAudience   = errors.New("audience")    // aud does not name this upstream
	ErrRequest    = errors.New("request")     // issued for another method, path, query or body
	// ErrValue: the value the server hands an event's handler is not one
	// the context binds (CheckValue).
	ErrValue = errors.New("value")
)

// Keys are langgate's published keys (its /.well-known/jwks.json).
type Keys struct {
	set jose.JSONWebKeySet
}

// ParseKeys reads a JWK set of public keys.
func ParseKeys(data []byte) (*Keys, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	return &Keys{set: set}, nil
}

// Expect is what a context must say to be accepted for this request.
type Expect struct {
	Issuer   string
	Audience string
	// Method and Path are the request's (Path as langgate normalizes it:
	// no query, no dot segments, no doubled slashes).
	Method, Path string
	// Query is the request's query as received (r.URL.RawQuery, no "?"):
	// its canonical form must be the one the context binds.
	Query string
	// BodySHA256 is the hex SHA-256 of the body received; a context that
	// binds a body must bind this one. Empty means the verifier cannot
	// see the body (then only method, path and query are bound, and the
	// event values, CheckValue).
	BodySHA256 string
	// Now is the time to check exp against (time.Now when zero); Leeway
	// is the clock skew allowed (none when zero).
	Now    time.Time
	Leeway time.Duration
}

// Verify checks a context and returns it.
func (k *Keys) Verify(token string, want Expect) (*langgatev1.AuthContext, error) {
	obj, err := jose.ParseSignedCompact(token, []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256})
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, fmt.Errorf("%w: %w", ErrAlgorithm, err)
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(obj.Signatures) != 1 {
		return nil, fmt.Errorf("%w: %d signatures", ErrMalformed, len(obj.Signatures))
	}
	h := obj.Signatures[0].Protected
	keys := k.set.Key(h.KeyID)
	if h.KeyID == "" || len(keys) != 1 {
		return nil, fmt.Errorf("%w: kid %q", ErrUnknownKey, h.KeyID)
	}
	if (keys[0].Algorithm != "" && keys[0].Algorithm != h.Algorithm) || !fits(keys[0].Key, h.Algorithm) {
		return nil, fmt.Errorf("%w: %s with key %q", ErrAlgorithm, h.Algorithm, h.KeyID)
	}
	payload, err := obj.Verify(keys[0].Key)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	c := &langgatev1.AuthContext{}
	if err := protojson.Unmarshal(payload, c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	now := want.Now
	if now.IsZero() {
		now = time.Now()
	}
	switch {
	case c.Exp == 0 || now.After(time.Unix(int64(c.Exp), 0).Add(want.Leeway)):
		return nil, fmt.Errorf("%w: exp %d", ErrExpired, c.Exp)
	case now.Add(want.Leeway).Before(time.Unix(int64(c.Iat), 0)):
		return nil, fmt.Errorf("%w: issued in the future (iat %d)", ErrExpired, c.Iat)
	case c.Iss != want.Issuer:
		return nil, fmt.Errorf("%w: %q", ErrIssuer, c.Iss)
	case !slices.Contains(c.Aud, want.Audience):
		return nil, fmt.Errorf("%w: %v", ErrAudience, c.Aud)
	}
	r := c.GetRequest()
	if r.GetMethod() != want.Method || r.GetPath() != want.Path || (r.GetBodySha256() != "" && want.BodySHA256 != "" && r.GetBodySha256() != want.BodySHA256) {
		return nil, fmt.Errorf("%w: issued for %s %s", ErrRequest, r.GetMethod(), r.GetPath())
	}
	if q, err := routes.CanonicalQuery(want.Query); err != nil || q != r.GetQuery() {
		return nil, fmt.Errorf("%w: issued for another query", ErrRequest)
	}
	return c, nil
}

// fits reports whether a public key verifies alg: Ed25519 only EdDSA,
// P-256 only ES256 (and the key's own alg when it states one).
func fits(key any, alg string) bool {
	switch k := key.(type) {
	case ed25519.PublicKey:
		return alg == string(jose.EdDSA)
	case *ecdsa.PublicKey:
		return k.Curve == elliptic.P256() && alg == string(jose.ES256)
	}
	return false
}

// Event returns the context's grant for resource:action, or nil: an event
// the context does not list must not run.
func Event(c *langgatev1.AuthContext, resource, action string) *langgatev1.Event {
	for _, e := range c.GetEvents() {
		if e.GetResource() == resource && e.GetAction() == action {
			return e
		}
	}
	return nil
}
