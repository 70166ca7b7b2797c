// Package authctx signs the auth context langgate hands an upstream
// (x-langgate-context): the langgate.v1.AuthContext of one request, as its
// canonical JSON (protojson), in a compact JWS signed with EdDSA (the
// default) or ES256. Keys come from a JWK set of private keys (a file, or a
// Kubernetes Secret mounted as one): the first signs, all are published,
// so a new key can be rolled out before it signs and an old one kept until
// its contexts expired. A context identical to one signed recently (same
// user, events, policy and request) reuses that signature while more than
// half its lifetime is left, so repeated requests cost a map lookup.
package authctx

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

// MaxKeyFileBytes bounds a key file.
const MaxKeyFileBytes = 64 << 10

// maxCached bounds the signature cache.
const maxCached = 10_000

// Keys are the signing keys of one configuration.
type Keys struct {
	signing jose.JSONWebKey
	public  jose.JSONWebKeySet
	jwks    []byte
	// header is the signing key's protected header, base64url-encoded
	// once: every context signed with the key has the same one.
	header string
}

// ParseKeys reads a JWK set of private signing keys. Every key needs a
// kid and an alg: EdDSA (an Ed25519 key) or ES256 (a P-256 key). The first
// key signs; every key's public half is published.
func ParseKeys(data []byte) (*Keys, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JWK set: %w", err)
	}
	if len(set.Keys) == 0 {
		return nil, errors.New("the key set holds no key")
	}
	k := &Keys{}
	seen := map[string]bool{}
	for i, key := range set.Keys {
		if key.KeyID == "" {
			return nil, fmt.Errorf("key %d: a kid is required", i)
		}
		if seen[key.KeyID] {
			return nil, fmt.Errorf("key %q: the kid is used twice", key.KeyID)
		}
		seen[key.KeyID] = true
		if key.Use != "" && key.Use != "sig" {
			return nil, fmt.Errorf("key %q: use %q, want sig", key.KeyID, key.Use)
		}
		switch pk := key.Key.(type) {
		case ed25519.PrivateKey:
			if key.Algorithm != string(jose.EdDSA) {
				return nil, fmt.Errorf("key %q: an Ed25519 key signs EdDSA, not %q", key.KeyID, key.Algorithm)
			}
		case *ecdsa.PrivateKey:
			if pk.Curve != elliptic.P256() || key.Algorithm != string(jose.ES256) {
				return nil, fmt.Errorf("key %q: an ECDSA key must be P-256 with alg ES256", key.KeyID)
			}
		default:
			return nil, fmt.Errorf("key %q: a private Ed25519 (EdDSA) or P-256 (ES256) key is required, got %T", key.KeyID, key.Key)
		}
		pub := key.Public()
		pub.Use = "sig"
		k.public.Keys = append(k.public.Keys, pub)
	}
	k.signing = set.Keys[0]
	hdr, err := json.Marshal(map[string]string{"alg": k.signing.Algorithm, "kid": k.signing.KeyID, "typ": "JWT"})
	if err != nil {
		return nil, err
	}
	k.header = base64.RawURLEncoding.EncodeToString(hdr)
	if k.jwks, err = json.Marshal(k.public); err != nil {
		return nil, err
	}
	return k, nil
}

// sign returns the compact JWS of payload: the precomputed header, the
// payload, and the signature over both (RFC 7515; EdDSA per RFC 8037,
// ES256 as the 64-byte R||S).
func (k *Keys) sign(payload []byte) (string, error) {
	n := len(k.header) + 1 + base64.RawURLEncoding.EncodedLen(len(payload))
	input := make([]byte, n, n+1+base64.RawURLEncoding.EncodedLen(ecdsaSigBytes))
	copy(input, k.header)
	input[len(k.header)] = '.'
	base64.RawURLEncoding.Encode(input[len(k.header)+1:], payload)
	var sig []byte
	switch key := k.signing.Key.(type) {
	case ed25519.PrivateKey:
		sig = ed25519.Sign(key, input)
	case *ecdsa.PrivateKey:
		sum := sha256.Sum256(input)
		r, s, err := ecdsa.Sign(rand.Reader, key, sum[:])
		if err != nil {
			return "", err
		}
		sig = make([]byte, ecdsaSigBytes)
		r.FillBytes(sig[:ecdsaSigBytes/2])
		s.FillBytes(sig[ecdsaSigBytes/2:])
	default:
		return "", fmt.Errorf("unsupported key %T", k.signing.Key)
	}
	out := append(input, '.')
	out = base64.RawURLEncoding.AppendEncode(out, sig)
	return string(out), nil
}

// ecdsaSigBytes is an ES256 signature's length (R and S, 32 bytes each).
const ecdsaSigBytes = 64

// JWKS is the public key set, as /.well-known/jwks.json serves it.
func (k *Keys) JWKS() []byte { return k.jwks }

// SigningKeyID is the kid of the key that signs.
func (k *Keys) SigningKeyID() string { return k.signing.KeyID }

// Options configure a Signer.
type Options struct {
	Issuer   string
	Audience []string
	// TTL is a context's lifetime.
	TTL time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
}

// Signer signs auth contexts with one configuration's keys.
type Signer struct {
	keys *Keys
	opts Options

	mu    sync.Mutex
	cache map[[sha256.Size]byte]cached
}

type cached struct {
	jws       string
	reuseTill time.Time
}

// NewSigner returns a signer.
func NewSigner(keys *Keys, opts Options) *Signer {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Signer{keys: keys, opts: opts, cache: map[[sha256.Size]byte]cached{}}
}

// Keys returns the signer's keys.
func (s *Signer) Keys() *Keys { return s.keys }

// marshal is the canonical JSON of a context (the JWS payload).
var marshal = protojson.MarshalOptions{UseProtoNames: true}

// Sign completes c (issuer, audience, issued-at, expiry; c.Jti is the
// decision id) and returns it as a compact JWS. An identical context
// signed less than half a lifetime ago is answered with that signature
// (its iat, exp and jti are the first one's).
func (s *Signer) Sign(c *langgatev1.AuthContext) (string, error) {
	c.Iss, c.Aud = s.opts.Issuer, s.opts.Audience
	// The cache key: the context without what differs per request.
	jti := c.Jti
	c.Jti, c.Iat, c.Exp = "", 0, 0
	raw, err := proto.MarshalOptions{Deterministic: true}.Marshal(c)
	if err != nil {
		return "", err
	}
	key := sha256.Sum256(raw)
	now := s.opts.Now()
	s.mu.Lock()
	if e, ok := s.cache[key]; ok && now.Before(e.reuseTill) {
		s.mu.Unlock()
		return e.jws, nil
	}
	s.mu.Unlock()

	c.Jti = jti
	c.Iat, c.Exp = unix(now), unix(now.Add(s.opts.TTL))
	payload, err := marshal.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := s.keys.sign(payload)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	if len(s.cache) >= maxCached {
		for k, e := range s.cache {
			if !now.Before(e.reuseTill) {
				delete(s.cache, k)
			}
		}
		if len(s.cache) >= maxCached {
			clear(s.cache)
		}
	}
	s.cache[key] = cached{jws: jws, reuseTill: now.Add(s.opts.TTL / 2)}
	s.mu.Unlock()
	return jws, nil
}

func unix(t time.Time) uint32 {
	u := t.Unix()
	if u < 0 {
		return 0
	}
	return uint32(u) //nolint:gosec // Unix seconds fit 32 unsigned bits until 2106
}
