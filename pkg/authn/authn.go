package authn

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/policy"
)

// Options tune an Authenticator; zero values take safe defaults.
type Options struct {
	// HTTPClient fetches discovery documents and key sets (NewHTTPClient()).
	HTTPClient *http.Client
	// Now is the clock (time.Now).
	Now func() time.Time
	// Logger receives background events (slog.Default()).
	Logger *slog.Logger
	// MinRefetch is the least time between unknown-kid refetches.
	MinRefetch time.Duration
	// CacheEntries and CacheBytes bound the verified-token cache.
	CacheEntries int
	CacheBytes   int64
}

func (o *Options) defaults() {
	if o.HTTPClient == nil {
		o.HTTPClient = NewHTTPClient()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MinRefetch <= 0 {
		o.MinRefetch = DefaultMinRefetch
	}
}

// Authenticator verifies bearer tokens and builds users for one policy.
type Authenticator struct {
	issuers map[string]*trusted
	used    []*Issuer
	mapping *userMapping
	cache   *Cache
	now     func() time.Time
}

// trusted is an issuer as one policy trusts it: its own audiences, leeway
// and algorithm pins over the shared key set.
type trusted struct {
	iss      *Issuer
	cfg      config.OIDCIssuer
	verifier *oidc.IDTokenVerifier
}

type userMapping struct {
	identity, displayName, permissions *policy.Program
}

// New compiles one policy's authentication against the shared registry.
// Problems are config errors located in file.
func New(file string, ac *config.Authenticate, env *cel.Env, reg *Registry) (*Authenticator, error) {
	m, err := compileMapping(env, file, ac.User)
	if err != nil {
		return nil, err
	}
	a := &Authenticator{
		issuers: map[string]*trusted{},
		mapping: m,
		cache:   reg.cacheFor(fingerprint(ac)),
		now:     reg.opts.Now,
	}
	for _, ic := range ac.OIDC {
		iss := reg.issuer(ic)
		a.used = append(a.used, iss)
		a.issuers[ic.Issuer] = &trusted{iss: iss, cfg: ic, verifier: oidc.NewVerifier(ic.Issuer, iss.keys, &oidc.Config{
			// Audiences (several allowed) and time claims (with leeway) are
			// checked by langgate before verification.
			SkipClientIDCheck:    true,
			SkipExpiryCheck:      true,
			SupportedSigningAlgs: ic.Algorithms,
			Now:                  reg.opts.Now,
		})}
	}
	return a, nil
}

// Issuers lists the issuers this policy trusts.
func (a *Authenticator) Issuers() []*Issuer { return a.used }

func compileMapping(env *cel.Env, file string, u config.UserMapping) (*userMapping, error) {
	var errs config.ErrorList
	compile := func(e config.Expr, t *cel.Type) *policy.Program {
		if e.IsZero() {
			return nil
		}
		p, err := policy.CompileExpr(env, file, e, t)
		var list config.ErrorList
		if errors.As(err, &list) {
			errs = append(errs, list...)
		}
		return p
	}
	m := &userMapping{
		identity:    compile(u.Identity, cel.StringType),
		displayName: compile(u.DisplayName, cel.StringType),
		permissions: compile(u.Permissions, cel.ListType(cel.StringType)),
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

// Cache exposes the verified-token cache (for its counters).
func (a *Authenticator) Cache() *Cache { return a.cache }

// Authenticate verifies a bearer token and returns its user. Errors are
// *Error values.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*policy.User, error) {
	if len(token) > MaxTokenBytes {
		return nil, invalid("token too large", nil)
	}
	key := sha256.Sum256([]byte(token))
	if u, ok := a.cache.Get(key); ok {
		return u, nil
	}
	payload, err := unverifiedPayload(token)
	if err != nil {
		return nil, invalid("malformed token", err)
	}
	// Cheap checks on the still-unverified claims come first, so expired or
	// misdirected tokens never cost a signature verification.
	claims := map[string]any{}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, invalid("malformed token", fmt.Errorf("claims are not a JSON object: %w", err))
	}
	issURL, _ := claims["iss"].(string)
	tr := a.issuers[issURL]
	if tr == nil {
		return nil, invalid("untrusted issuer", nil)
	}
	exp, err := a.checkClaims(tr.cfg, claims)
	if err != nil {
		return nil, err
	}
	if !tr.iss.keys.Loaded() {
		// The issuer's background loop is retrying; never fetch on this path.
		return nil, &Error{Kind: KindUnavailable, Reason: "issuer has no keys yet", Err: errNoKeys}
	}
	if _, err := tr.verifier.Verify(ctx, token); err != nil {
		return nil, invalid(verifyReason(err), err)
	}
	u, err := a.mapping.build(claims)
	if err != nil {
		return nil, invalid("user mapping failed", err)
	}
	a.cache.Put(key, u, exp, len(payload))
	return u, nil
}

// FromClaims builds the user from claims without any verification: for
// `langgate check --claims`, never for a request.
func (a *Authenticator) FromClaims(claims map[string]any) (*policy.User, error) {
	u, err := a.mapping.build(claims)
	if err != nil {
		return nil, invalid("user mapping failed", err)
	}
	return u, nil
}

// verifyReason classifies a go-oidc verification error. go-oidc wraps our
// key set's errors with %v, so errors.Is cannot see them: match the text.
func verifyReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, errBadSignature.Error()):
		return "bad signature"
	case strings.Contains(msg, errUnknownKey.Error()):
		return "unknown signing key"
	case strings.Contains(msg, "signature algorithm"), strings.Contains(msg, "unexpected signature"):
		return "algorithm not allowed"
	case strings.Contains(msg, "issued by a different provider"):
		return "wrong issuer"
	case strings.Contains(msg, "malformed"):
		return "malformed token"
	default:
		return "verification failed"
	}
}

// checkClaims applies the time and audience rules go-oidc leaves to us and
// returns the token's expiry.
func (a *Authenticator) checkClaims(cfg config.OIDCIssuer, claims map[string]any) (time.Time, error) {
	now := a.now()
	leeway := cfg.Leeway.Duration
	exp, ok := numericDate(claims["exp"])
	if !ok {
		return time.Time{}, invalid("missing exp", nil)
	}
	if now.After(exp.Add(leeway)) {
		return time.Time{}, invalid("expired", nil)
	}
	if raw, present := claims["nbf"]; present {
		nbf, ok := numericDate(raw)
		if !ok {
			return time.Time{}, invalid("malformed nbf", nil)
		}
		if now.Add(leeway).Before(nbf) {
			return time.Time{}, invalid("not yet valid", nil)
		}
	}
	if raw, present := claims["iat"]; present {
		iat, ok := numericDate(raw)
		if !ok {
			return time.Time{}, invalid("malformed iat", nil)
		}
		if now.Add(leeway).Before(iat) {
			return time.Time{}, invalid("issued in the future", nil)
		}
	}
	if !audienceMatches(claims["aud"], cfg.Audiences) {
		return time.Time{}, invalid("wrong audience", nil)
	}
	return exp, nil
}

func numericDate(v any) (time.Time, bool) {
	f, ok := v.(float64)
	if !ok || f < 0 || f > 1e11 {
		return time.Time{}, false
	}
	sec := int64(f)
	return time.Unix(sec, int64((f-float64(sec))*1e9)), true
}

func audienceMatches(aud any, want []string) bool {
	switch v := aud.(type) {
	case string:
		return slices.Contains(want, v)
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}

// unverifiedPayload decodes a compact JWS's payload without verifying it,
// only to read `iss` and pick the one verifier allowed to check it.
func unverifiedPayload(token string) ([]byte, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("compact JWS has %d parts, want 3", len(parts))
	}
	return base64.RawURLEncoding.DecodeString(parts[1])
}

func (m *userMapping) build(claims map[string]any) (*policy.User, error) {
	act, err := interpreter.NewActivation(map[string]any{policy.VarClaims: claims})
	if err != nil {
		return nil, err
	}
	str := func(p *policy.Program) (string, error) {
		if p == nil {
			return "", nil
		}
		v, err := p.Eval(act)
		if err != nil {
			return "", err
		}
		s, ok := v.(types.String)
		if !ok {
			return "", fmt.Errorf("%s: produced %s, not a string", p.Source, v.Type().TypeName())
		}
		return string(s), nil
	}
	identity, err := str(m.identity)
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	if identity == "" {
		return nil, errors.New("identity is empty")
	}
	display, err := str(m.displayName)
	if err != nil {
		return nil, fmt.Errorf("display_name: %w", err)
	}
	var perms []string
	if m.permissions != nil {
		v, err := m.permissions.Eval(act)
		if err != nil {
			return nil, fmt.Errorf("permissions: %w", err)
		}
		j, err := policy.ToJSON(v)
		if err != nil {
			return nil, fmt.Errorf("permissions: %w", err)
		}
		list, ok := j.([]any)
		if !ok {
			return nil, fmt.Errorf("permissions: %s produced %T, not a list", m.permissions.Source, j)
		}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("permissions: %s produced a non-string element", m.permissions.Source)
			}
			if s != "" {
				perms = append(perms, s)
			}
		}
	}
	return policy.NewUser(identity, display, perms, claims), nil
}
