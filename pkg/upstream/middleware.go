package upstream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/langgate/langgate/pkg/routes"
	langgatev1 "github.com/langgate/langgate/proto/langgate/v1"
)

// Header is the request header langgate puts the signed context in.
const Header = "x-langgate-context"

// MaxJWKSBytes bounds a fetched key set.
const MaxJWKSBytes = 1 << 20

// KeySource gives the keys to verify with; refresh asks for them again
// (a context names a kid not held, after a rotation).
type KeySource interface {
	Keys(ctx context.Context, refresh bool) (*Keys, error)
}

// Static is a fixed key set (a file read at start).
type Static struct{ K *Keys }

// Keys returns the set.
func (s Static) Keys(context.Context, bool) (*Keys, error) { return s.K, nil }

// Remote fetches langgate's /.well-known/jwks.json: cached for MaxAge
// (5 minutes when zero), asked again on an unknown kid at most every
// MinRefresh (10 seconds when zero).
type Remote struct {
	URL        string
	Client     *http.Client // http.DefaultClient when nil
	MaxAge     time.Duration
	MinRefresh time.Duration

	mu   sync.Mutex
	keys *Keys
	at   time.Time
}

// Keys returns the cached set, fetching it when stale or asked to.
func (r *Remote) Keys(ctx context.Context, refresh bool) (*Keys, error) {
	maxAge, minRefresh := r.MaxAge, r.MinRefresh
	if maxAge == 0 {
		maxAge = 5 * time.Minute
	}
	if minRefresh == 0 {
		minRefresh = 10 * time.Second
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	age := time.Since(r.at)
	if r.keys != nil && age < maxAge && (!refresh || age < minRefresh) {
		return r.keys, nil
	}
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL, nil) //nolint:gosec // the configured JWKS URL, never a request's
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req) //nolint:gosec // the configured JWKS URL, never a request's
	if err != nil {
		if r.keys != nil {
			return r.keys, nil // keep verifying with what is held
		}
		return nil, fmt.Errorf("fetching %s: %w", r.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSBytes+1))
	if err == nil && (resp.StatusCode != http.StatusOK || len(data) > MaxJWKSBytes) {
		err = fmt.Errorf("GET %s: HTTP %d, %d bytes", r.URL, resp.StatusCode, len(data))
	}
	var keys *Keys
	if err == nil {
		keys, err = ParseKeys(data)
	}
	if err != nil {
		if r.keys != nil {
			return r.keys, nil
		}
		return nil, err
	}
	r.keys, r.at = keys, time.Now()
	return keys, nil
}

// Verifier verifies the contexts of requests for one upstream.
type Verifier struct {
	Source   KeySource
	Issuer   string // "langgate" when empty
	Audience string
	Leeway   time.Duration
}

// VerifyToken verifies a context for a request, refreshing the keys once
// on an unknown kid.
func (v *Verifier) VerifyToken(ctx context.Context, token string, want Expect) (*langgatev1.AuthContext, error) {
	want.Issuer, want.Audience = v.issuer(), v.Audience
	if want.Leeway == 0 {
		want.Leeway = v.Leeway
	}
	keys, err := v.Source.Keys(ctx, false)
	if err != nil {
		return nil, err
	}
	c, err := keys.Verify(token, want)
	if errors.Is(err, ErrUnknownKey) {
		if keys, err = v.Source.Keys(ctx, true); err != nil {
			return nil, err
		}
		c, err = keys.Verify(token, want)
	}
	return c, err
}

func (v *Verifier) issuer() string {
	if v.Issuer == "" {
		return "langgate"
	}
	return v.Issuer
}

type ctxKey struct{}

// FromContext returns the verified auth context a middleware stored.
func FromContext(ctx context.Context) (*langgatev1.AuthContext, bool) {
	c, ok := ctx.Value(ctxKey{}).(*langgatev1.AuthContext)
	return c, ok
}

// Middleware refuses (401, JSON detail) a request without a valid context
// for its method, path, query and body, and hands the context to next
// (FromContext). The path is cleaned as langgate normalizes it (dot
// segments, doubled slashes). When the context binds a body, the body
// (up to MaxBodyBytes; a longer one is refused) is read, checked, and
// handed on unchanged. What the handler acts on is checked by CheckValue
// against the event's bound values.
func (v *Verifier) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token := r.Header.Get(Header)
		if token == "" {
			refuse(w, "missing "+Header)
			return
		}
		p := path.Clean("/" + r.URL.Path)
		c, err := v.VerifyToken(r.Context(), token, Expect{Method: r.Method, Path: p, Query: r.URL.RawQuery})
		if err == nil && c.GetRequest().GetBodySha256() != "" {
			err = checkBody(r, c.GetRequest().GetBodySha256())
		}
		if err != nil {
			refuse(w, "invalid "+Header+": "+verdict(err))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, c)))
	})
}

// MaxBodyBytes bounds the body Middleware reads to check a bound body's
// digest: langgate binds none longer (routes.MaxBodyBytes).
const MaxBodyBytes = routes.MaxBodyBytes

// checkBody reads r's body, compares its SHA-256 with want and puts the
// body back for the handler.
func checkBody(r *http.Request, want string) error {
	var data []byte
	if r.Body != nil {
		var err error
		data, err = io.ReadAll(io.LimitReader(r.Body, MaxBodyBytes+1))
		if err != nil {
			return fmt.Errorf("%w: reading the body: %w", ErrRequest, err)
		}
		r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(data), r.Body))
	}
	sum := sha256.Sum256(data)
	if len(data) > MaxBodyBytes || hex.EncodeToString(sum[:]) != want {
		return fmt.Errorf("%w: issued for another body", ErrRequest)
	}
	return nil
}

func refuse(w http.ResponseWriter, detail string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_ = json.NewEncoder(w).Encode(map[string]string{"detail": detail})
}

// verdict names an error by its sentinel (never its text).
func verdict(err error) string {
	for _, s := range []error{ErrMalformed, ErrAlgorithm, ErrUnknownKey, ErrSignature, ErrExpired, ErrIssuer, ErrAudience, ErrRequest, ErrValue} {
		if errors.Is(err, s) {
			return s.Error()
		}
	}
	return "unverifiable"
}

// UnaryInterceptor verifies the context of a gRPC call behind Envoy: its
// metadata's x-langgate-context, issued for POST and the full method
// (/package.Service/Method), as Envoy's ext_authz sees a gRPC request.
func (v *Verifier) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		tokens := md.Get(Header)
		if len(tokens) != 1 {
			return nil, status.Error(codes.Unauthenticated, "missing "+Header)
		}
		c, err := v.VerifyToken(ctx, tokens[0], Expect{Method: http.MethodPost, Path: info.FullMethod})
		if err != nil {
			return nil, status.Error(codes.Unauthenticated, "invalid "+Header+": "+verdict(err))
		}
		return handler(context.WithValue(ctx, ctxKey{}, c), req)
	}
}

// Matches applies a LangGraph filter to a document's metadata, as the
// Python server does: every key must match — a plain value by equality,
// {"$eq": v} likewise, {"$contains": v} a list holding v (or every element
// of a list v) — and "$or" / "$and" combine filter objects. An unknown
// operator matches nothing (fail closed).
func Matches(doc, filter map[string]any) bool {
	for k, want := range filter {
		switch k {
		case "$or", "$and":
			groups, ok := want.([]any)
			if !ok || len(groups) == 0 {
				return false
			}
			matched := false
			for _, g := range groups {
				gm, ok := g.(map[string]any)
				m := ok && Matches(doc, gm)
				if k == "$and" && !m {
					return false
				}
				matched = matched || m
			}
			if k == "$or" && !matched {
				return false
			}
			continue
		}
		if strings.HasPrefix(k, "$") {
			return false
		}
		if !matchValue(doc[k], want) {
			return false
		}
	}
	return true
}

func matchValue(got, want any) bool {
	op, isOp := want.(map[string]any)
	if !isOp {
		return equal(got, want)
	}
	if len(op) != 1 {
		return false
	}
	for name, v := range op {
		switch name {
		case "$eq":
			return equal(got, v)
		case "$contains":
			list, ok := got.([]any)
			if !ok {
				return false
			}
			needles, isList := v.([]any)
			if !isList {
				needles = []any{v}
			}
			for _, n := range needles {
				found := false
				for _, x := range list {
					if equal(x, n) {
						found = true
						break
					}
				}
				if !found {
					return false
				}
			}
			return true
		}
	}
	return false
}

func equal(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}
