package authn

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
	"unsafe"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
	"github.com/go-jose/go-jose/v4"

	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/expr"
)

// Options tune an Authenticator; zero values take safe defaults.
type Options struct {
	// HTTPClient fetches discovery documents and key sets and calls
	// introspection endpoints (NewHTTPClient()).
	HTTPClient *http.Client
	// Now is the clock (time.Now).
	Now func() time.Time
	// Logger receives background events (slog.Default()).
	Logger *slog.Logger
	// MinRefetch is the least time between unknown-kid refetches for
	// issuers whose configuration does not set unknown_kid_refetch_interval.
	MinRefetch time.Duration
	// CacheEntries and CacheBytes bound the verified-token cache of
	// sections whose configuration does not set `cache`.
	CacheEntries int
	CacheBytes   int64
	// LookupEnv reads api_keys.env (os.LookupEnv).
	LookupEnv func(string) (string, bool)
	// Overload, when set, sheds verification under memory pressure: while
	// it says so (pkg/overload's High level), a credential that is not an
	// API key and not in the verified-token cache is refused
	// (KindOverloaded) instead of verified, so users already verified
	// keep being served.
	Overload Shedder
}

// Shedder says whether to refuse, rather than verify, a credential that
// is not in the cache (*overload.Guard is one). A nil Shedder never does.
type Shedder interface {
	ShedUnverified() bool
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
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
}

// Authenticator finds a request's credential and turns it into a user for
// one policy: an API key, a JWT from a trusted issuer, or an opaque token
// resolved by introspection.
type Authenticator struct {
	sources  []source
	missing  string // the reason when no credential is found
	maxBytes int    // no credential longer than this is looked at

	issuers  map[string]*trusted
	used     []*Issuer
	mapping  *userMapping // the section's; nil when every issuer has its own
	apiKeys  *APIKeyStore
	intro    *Introspector
	introJWT bool // introspect JWTs no issuer verifies (tokens: all)
	cache    *Cache
	now      func() time.Time
	overload Shedder
}

// trusted is an issuer as one policy trusts it: its own audiences, leeway,
// algorithm pins, token rules and user mapping over the shared key set.
type trusted struct {
	iss      *Issuer
	cfg      config.OIDCIssuer
	algs     []jose.SignatureAlgorithm // cfg.Algorithms, for the JWS parser
	mapping  *userMapping
	typ      string // normalized; "" when not pinned
	maxBytes int
}

type userMapping struct {
	identity, displayName, permissions *expr.Program
	fields                             []userField
	// dropClaims: no expression reads a user's claims, so the users it
	// builds do not keep them (Needs).
	dropClaims bool
}

type userField struct {
	name string
	prg  *expr.Program
}

// reservedField reports whether a user field name is one the user object
// already has, or one the upstream adapters keep their state under.
func reservedField(name string) bool {
	switch name {
	case "identity", "display_name", "is_authenticated", "permissions", "is_studio_user", "kind":
		return true
	}
	return strings.HasPrefix(name, "langgate_")
}

// VarClaims is the one variable a user mapping's expressions can read: the
// verified claims (or, for an API key, the key's claims).
const VarClaims = "claims"

// NewEnv builds the CEL environment of user mappings: `claims` and
// nothing else, for that is all there is when a credential is verified.
func NewEnv() (*cel.Env, error) {
	return expr.NewEnv(expr.Var{Name: VarClaims, Type: expr.JSONMap})
}

// Needs is what the decisions built on an Authenticator read of a user
// beyond its identity, display name, permissions and fields: a cached user
// keeps only what they read.
type Needs struct {
	// Claims: an expression of the policy reads `claims`, so a user keeps
	// its verified claims (a token's payload, about its size again in
	// memory). Without it they are dropped once the user mapping has run.
	Claims bool
}

// New compiles one policy's authentication against the shared registry.
// Problems are config errors located in file.
func New(file string, ac *config.Authenticate, reg *Registry, needs Needs) (*Authenticator, error) {
	env, err := NewEnv()
	if err != nil {
		return nil, fmt.Errorf("building the user mapping's CEL environment: %w", err)
	}
	var errs config.ErrorList
	collect := func(err error) {
		var list config.ErrorList
		if errors.As(err, &list) {
			errs = append(errs, list...)
		}
	}
	var section *userMapping
	if !ac.User.Identity.IsZero() {
		m, err := compileMapping(env, file, ac.User)
		collect(err)
		section = m
	}
	a := &Authenticator{
		issuers:  map[string]*trusted{},
		mapping:  section,
		cache:    reg.cacheFor(cacheKey(ac, needs), ac.Cache),
		overload: reg.opts.Overload,
		now:      reg.opts.Now,
		maxBytes: MaxTokenBytes,
	}
	a.sources, a.missing = compileSources(ac.Credentials)
	for _, ic := range ac.OIDC {
		m := section
		if ic.User != nil {
			var err error
			m, err = compileMapping(env, file, *ic.User)
			collect(err)
		}
		iss := reg.issuer(ic)
		a.used = append(a.used, iss)
		tr := &trusted{iss: iss, cfg: ic, mapping: m, typ: normalizeTyp(ic.Typ), maxBytes: maxTokenBytes(ic)}
		for _, alg := range ic.Algorithms {
			tr.algs = append(tr.algs, jose.SignatureAlgorithm(alg))
		}
		a.issuers[ic.Issuer] = tr
		a.maxBytes = max(a.maxBytes, tr.maxBytes)
	}
	if in := ac.Introspection; in != nil {
		m := section
		if in.User != nil {
			var err error
			m, err = compileMapping(env, file, *in.User)
			collect(err)
		}
		a.intro = newIntrospector(in, reg.opts.HTTPClient, reg.opts.Now, reg.opts.Logger, m, a.cache)
		a.introJWT = in.Tokens == config.IntrospectAll
	}
	if k := ac.APIKeys; k != nil {
		store, err := reg.apiKeyStore(*k)
		if err != nil {
			errs = append(errs, &config.Error{File: file, Pos: k.Pos, Msg: err.Error()})
		}
		a.apiKeys = store
	}
	if len(errs) > 0 {
		return nil, errs
	}
	for _, m := range a.mappings() {
		m.dropClaims = !needs.Claims
	}
	return a, nil
}

// cacheKey names the section's cache in the registry: users that keep
// their claims and users that do not never share one.
func cacheKey(ac *config.Authenticate, needs Needs) string {
	if needs.Claims {
		return fingerprint(ac) + "+claims"
	}
	return fingerprint(ac)
}

// mappings lists the user mappings of the section, its issuers and its
// introspection.
func (a *Authenticator) mappings() []*userMapping {
	ms := []*userMapping{a.mapping}
	for _, tr := range a.issuers {
		ms = append(ms, tr.mapping)
	}
	if a.intro != nil {
		ms = append(ms, a.intro.mapping)
	}
	return slices.DeleteFunc(ms, func(m *userMapping) bool { return m == nil })
}

// Issuers lists the issuers this policy trusts.
func (a *Authenticator) Issuers() []*Issuer { return a.used }

// APIKeys returns the policy's API key store, or nil.
func (a *Authenticator) APIKeys() *APIKeyStore { return a.apiKeys }

// Introspection returns the policy's introspector, or nil.
func (a *Authenticator) Introspection() *Introspector { return a.intro }

func compileMapping(env *cel.Env, file string, u config.UserMapping) (*userMapping, error) {
	var errs config.ErrorList
	compile := func(e config.Expr, t *cel.Type) *expr.Program {
		if e.IsZero() {
			return nil
		}
		p, err := expr.Compile(env, file, e, t)
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
	for _, e := range u.Fields.Entries {
		switch {
		case e.Op != "":
			errs = append(errs, &config.Error{File: file, Pos: e.OpPos, Msg: fmt.Sprintf("user field %q: operators are only allowed in filters", e.Key)})
		case reservedField(e.Key):
			errs = append(errs, &config.Error{File: file, Pos: e.KeyPos, Msg: fmt.Sprintf("user field %q: the name is taken (identity, display_name, is_authenticated, permissions, is_studio_user, kind, langgate_*)", e.Key)})
		default:
			m.fields = append(m.fields, userField{name: e.Key, prg: compile(e.Expr, nil)})
		}
	}
	if u.Fields.Whole != nil {
		errs = append(errs, &config.Error{File: file, Pos: u.Fields.Whole.Pos, Msg: "user.fields: a map from a field name to a CEL value, not one expression"})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return m, nil
}

// Cache exposes the verified-token cache (for its counters).
func (a *Authenticator) Cache() *Cache { return a.cache }

// AuthenticateRequest finds the request's credential in the configured
// locations (headers with lower-case names, the parsed query) and
// authenticates it. Errors are *Error values.
func (a *Authenticator) AuthenticateRequest(ctx context.Context, headers map[string]string, query url.Values) (*User, error) {
	cred, typ, err := a.credential(headers, query)
	if err != nil {
		return nil, err
	}
	return a.authenticate(ctx, cred, typ)
}

// Authenticate verifies a credential taken from any location (an API key
// or a token) and returns its user. Errors are *Error values.
func (a *Authenticator) Authenticate(ctx context.Context, token string) (*User, error) {
	return a.authenticate(ctx, token, config.CredentialAny)
}

// authenticate checks a credential, cheapest first: size, API keys (a hash
// and a map lookup, never cached so a revocation applies at once), the
// verified-token cache, then a JWT from the issuer its `iss` names, or
// introspection for an opaque token.
func (a *Authenticator) authenticate(ctx context.Context, cred, typ string) (*User, error) {
	if len(cred) > a.maxBytes {
		return nil, invalid("token too large", nil)
	}
	key := credentialKey(cred)
	if a.apiKeys != nil && typ != config.CredentialToken {
		u, err := a.apiKeys.lookup(key)
		switch {
		case err != nil:
			return nil, err
		case u != nil:
			return u, nil
		case typ == config.CredentialAPIKey:
			return nil, invalid("unknown API key", nil)
		}
	}
	if u, ok := a.cache.Get(key); ok {
		return u, nil
	}
	if a.overload != nil && a.overload.ShedUnverified() {
		return nil, &Error{Kind: KindOverloaded, Reason: "overloaded", Err: errShed}
	}
	if !jwtShaped(cred) {
		switch {
		case a.intro != nil:
			return a.intro.authenticate(ctx, cred, key)
		case a.apiKeys != nil && typ != config.CredentialToken:
			return nil, invalid("unknown API key", nil)
		default:
			return nil, invalid("malformed token", errors.New("not a compact JWS"))
		}
	}
	tok, err := parseUnverified(cred)
	if err != nil {
		return nil, invalid("malformed token", err)
	}
	tr := a.issuers[tok.iss]
	if tr == nil {
		if a.intro != nil && a.introJWT {
			return a.intro.authenticate(ctx, cred, key)
		}
		// Never tried against another issuer, never a network call.
		return nil, invalid("untrusted issuer", nil)
	}
	return a.verifyJWT(ctx, tr, cred, tok, key)
}

// credentialKey is the SHA-256 of a credential, the key of the token cache
// and of the API key list. It reads the string in place: a token is
// hundreds of bytes, and copying it to a []byte would be the cache hit's
// only allocation.
func credentialKey(cred string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(cred), len(cred))) //nolint:gosec // read-only view; Sum256 neither writes nor keeps it
}

// verifyJWT verifies a token from a trusted issuer in a fixed order: size,
// header rules, claims, then the signature (the only step that may touch
// the network, for an unknown kid), then the user mapping.
func (a *Authenticator) verifyJWT(ctx context.Context, tr *trusted, token string, tok *unverified, key [sha256.Size]byte) (*User, error) {
	if len(token) > tr.maxBytes {
		return nil, invalid("token too large", nil)
	}
	if err := tr.checkHeader(tok); err != nil {
		return nil, err
	}
	exp, cerr := tr.checkClaims(a.now(), tok.claims)
	if cerr != nil {
		return nil, cerr
	}
	if !tr.iss.keys.Loaded() {
		// The issuer's background loop is retrying; never fetch on this path.
		return nil, &Error{Kind: KindUnavailable, Reason: "issuer has no keys yet", Err: errNoKeys}
	}
	// The signature, against the issuer's key set directly. go-oidc's
	// IDTokenVerifier would add nothing here: the checks it makes (issuer,
	// audience, expiry, algorithm pins) langgate has made above with its
	// own rules (several audiences, leeway, typ, azp, required claims), and
	// it would wrap the key set's errors as text, hiding their type.
	payload, err := tr.iss.keys.verify(ctx, token, tr.algs)
	if err != nil {
		reason, kind := verifyReason(err)
		return nil, &Error{Kind: kind, Reason: reason, Err: err}
	}
	if !bytes.Equal(payload, tok.payload) {
		// The claims checked above must be the claims the signature covers.
		return nil, invalid("malformed token", errPayloadMismatch)
	}
	if tr.mapping == nil {
		return nil, invalid("user mapping failed", errors.New("no user mapping for this issuer"))
	}
	u, err := tr.mapping.build(tok.claims)
	if err != nil {
		return nil, invalid("user mapping failed", err)
	}
	kept := 0
	if !tr.mapping.dropClaims {
		u.compactClaims(tok.payload)
		kept = len(tok.payload)
	}
	a.cache.Put(key, u, exp, kept)
	return u, nil
}

// FromClaims builds the user from claims without any verification: for
// `langgate check --claims`, never for a request. The mapping is that of
// the issuer the claims' `iss` names, else the section's.
func (a *Authenticator) FromClaims(claims map[string]any) (*User, error) {
	m := a.mapping
	if iss, _ := claims["iss"].(string); a.issuers[iss] != nil {
		m = a.issuers[iss].mapping
	}
	if m == nil {
		return nil, invalid("user mapping failed", fmt.Errorf("no user mapping for these claims (iss %q)", claims["iss"]))
	}
	u, err := m.build(claims)
	if err != nil {
		return nil, invalid("user mapping failed", err)
	}
	return u, nil
}

func (m *userMapping) build(claims map[string]any) (*User, error) {
	act, err := interpreter.NewActivation(map[string]any{VarClaims: claims})
	if err != nil {
		return nil, err
	}
	str := func(p *expr.Program) (string, error) {
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
		j, err := expr.ToJSON(v)
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
	var fields map[string]any
	for _, f := range m.fields {
		v, err := f.prg.Eval(act)
		if err != nil {
			return nil, fmt.Errorf("fields.%s: %w", f.name, err)
		}
		j, err := expr.ToJSON(v)
		if err != nil {
			return nil, fmt.Errorf("fields.%s: %w", f.name, err)
		}
		if fields == nil {
			fields = make(map[string]any, len(m.fields))
		}
		fields[f.name] = j
	}
	if m.dropClaims {
		claims = nil
	}
	return NewUserWithFields(identity, display, perms, claims, fields), nil
}
