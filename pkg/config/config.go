// Package config owns langgate's configuration file: its YAML schema,
// ${ENV} expansion, strict decoding (unknown keys are errors) and the
// structural validation that needs no compilation. Every problem is reported
// with file:line:column; the policy and authentication packages compile the
// expressions it carries and report their errors at the same positions.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// MaxFileSize bounds a configuration file; a larger one is refused unread.
const MaxFileSize = 4 << 20

// File is a whole langgate configuration: either one policy (top-level
// authenticate and authorize) or several named policies, selected per
// request.
type File struct {
	// Name is the path the configuration was read from (or a label for an
	// embedded one); errors are reported against it.
	Name string `yaml:"-"`

	// PolicyName names the single policy (default "default"): the name
	// Envoy's context extension `policy` selects it by.
	PolicyName string `yaml:"name"`
	// Authenticate is the single policy's authentication, or, with
	// Policies, the default for policies that have none of their own.
	Authenticate *Authenticate `yaml:"authenticate"`
	// Authorize is the single policy's authorization (not with Policies).
	Authorize *Authorize `yaml:"authorize"`
	// Policies are named policies, selected per request by Envoy's
	// context_extensions `policy`, else by host, else DefaultPolicy.
	Policies map[string]*Policy `yaml:"policies"`
	// DefaultPolicy serves requests that select no policy.
	DefaultPolicy string `yaml:"default_policy"`
	// Explain controls what denials tell the client.
	Explain Explain `yaml:"explain"`
	// CORS makes denials readable by browser apps on other origins.
	CORS *CORS `yaml:"cors"`
	// Context signs what langgate authorized for each allowed request
	// (x-langgate-context), so an upstream can verify it.
	Context *SignedContext `yaml:"context"`

	policies []*Policy
}

// DefaultPolicyName names the policy of a single-policy configuration.
const DefaultPolicyName = "default"

// Policy is one route table with its handlers and authentication.
type Policy struct {
	Pos  Pos    `yaml:"-"`
	Name string `yaml:"-"`
	// Hosts are the :authority values (exact, or "*.example.com") that
	// select this policy when no context extension does.
	Hosts []string `yaml:"hosts"`
	// ShadowOf makes this policy a candidate replacement for the named
	// one: it is decided beside that policy on every request that policy
	// decides, and its verdict is logged and counted, never enforced. A
	// shadow policy is never selected (no hosts, not the default, refused
	// by the policy context extension).
	ShadowOf     string        `yaml:"shadow_of"`
	Authenticate *Authenticate `yaml:"authenticate"`
	Authorize    *Authorize    `yaml:"authorize"`
}

// Explain controls denial explanations.
type Explain struct {
	// ReasonHeader adds a short `x-langgate-reason` header to denials
	// (which handler or check refused; never a credential).
	ReasonHeader bool `yaml:"reason_header"`
}

// SignedContext configures the signed auth context (x-langgate-context): a
// compact JWS over the request's langgate.v1.AuthContext.
type SignedContext struct {
	Pos Pos `yaml:"-"`
	// Keys is a JWK set file of private signing keys (EdDSA or ES256, each
	// with a kid): the first signs, all are published at the admin port's
	// /.well-known/jwks.json. A Kubernetes Secret mounted as a file works;
	// it is re-read with the configuration.
	Keys string `yaml:"keys"`
	// Issuer is the context's iss ("langgate" by default).
	Issuer string `yaml:"issuer"`
	// Audience lists the upstreams the context is for (aud); required.
	Audience []string `yaml:"audience"`
	// TTL is a context's lifetime (60s by default, 1s to 1h).
	TTL *Duration `yaml:"ttl"`
}

// CORS lets a browser app on another origin read langgate's denials: the
// upstream's CORS middleware answers what it serves, but a 401 or 403 from
// langgate never reaches it, and without Access-Control-Allow-Origin the
// browser hides the denial from the app.
type CORS struct {
	Pos Pos `yaml:"-"`
	// AllowOrigins are exact origins ("https://app.example.com") or "*".
	AllowOrigins []string `yaml:"allow_origins"`
	// AllowCredentials adds Access-Control-Allow-Credentials: true (not
	// with "*").
	AllowCredentials bool `yaml:"allow_credentials"`
}

// PolicyList returns the policies in name order, a single-policy
// configuration as one policy named "default".
func (f *File) PolicyList() []*Policy { return f.policies }

// Authenticate says how callers prove who they are and how the user is built
// from what they prove.
type Authenticate struct {
	Pos Pos `yaml:"-"`

	// Credentials are the places a credential is looked for, in order; the
	// first one present is the request's credential. Default: the
	// Authorization header with the Bearer scheme.
	Credentials []CredentialSource `yaml:"credentials"`
	// OIDC lists the trusted token issuers.
	OIDC []OIDCIssuer `yaml:"oidc"`
	// Introspection verifies opaque tokens at an RFC 7662 endpoint.
	Introspection *Introspection `yaml:"introspection"`
	// APIKeys are static keys, stored hashed, each mapped to a user.
	APIKeys *APIKeys `yaml:"api_keys"`
	// Cache bounds the verified-token cache.
	Cache *TokenCache `yaml:"cache"`
	// User maps verified claims to the user handlers see (issuers and
	// introspection may override it).
	User UserMapping `yaml:"user"`
	// MCP makes the policy's MCP endpoint an OAuth 2.0 protected resource
	// as the MCP specification's authorization asks: langgate serves its
	// Protected Resource Metadata (RFC 9728), points an unauthenticated
	// client at it (WWW-Authenticate: Bearer resource_metadata="..."),
	// and accepts there only tokens issued for it (aud, RFC 8707).
	MCP *MCPResource `yaml:"mcp"`
}

// MCPResource is an MCP endpoint as an OAuth 2.0 protected resource.
type MCPResource struct {
	Pos Pos `yaml:"-"`
	// Resource is the endpoint's canonical URL, as MCP clients connect to
	// it (https://agents.example.com/mcp; http only on a loopback host):
	// the metadata's resource, the audience its tokens must carry, and,
	// by its path, the requests it applies to.
	Resource string `yaml:"resource"`
	// AuthorizationServers are the issuers MCP clients get their tokens
	// from; default: every authenticate.oidc issuer whose audiences list
	// the resource.
	AuthorizationServers []string `yaml:"authorization_servers"`
	// ScopesSupported are the scopes a client should ask for (optional).
	ScopesSupported []string `yaml:"scopes_supported"`
	// ResourceName is a name for people (optional).
	ResourceName string `yaml:"resource_name"`
	// ResourceDocumentation is a URL of documentation for developers (optional).
	ResourceDocumentation string `yaml:"resource_documentation"`
}

// OIDCIssuer is one trusted OpenID Connect issuer.
type OIDCIssuer struct {
	Pos Pos `yaml:"-"`

	// Issuer is the exact `iss` value and the base of discovery.
	Issuer string `yaml:"issuer"`
	// Audiences lists accepted `aud` values; a token must carry at least one.
	Audiences []string `yaml:"audiences"`
	// Algorithms pins the accepted signature algorithms (asymmetric only).
	Algorithms []string `yaml:"algorithms"`
	// Leeway is the clock skew allowed on exp, nbf and iat.
	Leeway *Duration `yaml:"leeway"`
	// JWKSURL skips discovery and reads keys from this URL.
	JWKSURL string `yaml:"jwks_url"`
	// RefreshInterval is how often the key set is refetched in the
	// background when its response carries no Cache-Control max-age.
	RefreshInterval *Duration `yaml:"refresh_interval"`
	// MinRefreshInterval and MaxRefreshInterval bound the refresh interval
	// a Cache-Control max-age asks for.
	MinRefreshInterval *Duration `yaml:"min_refresh_interval"`
	MaxRefreshInterval *Duration `yaml:"max_refresh_interval"`
	// UnknownKidRefetchInterval is the least time between two key set
	// fetches caused by tokens naming an unknown kid (nil: the registry's
	// default, 10s).
	UnknownKidRefetchInterval *Duration `yaml:"unknown_kid_refetch_interval"`
	// Typ pins the JOSE header `typ` ("at+jwt" for RFC 9068 access tokens).
	Typ string `yaml:"typ"`
	// RequiredClaims must be present in every token.
	RequiredClaims []string `yaml:"required_claims"`
	// AZP, when set, lists the accepted authorized parties: the token's
	// `azp` must be one of them.
	AZP []string `yaml:"azp"`
	// MaxTokenBytes bounds this issuer's tokens (default 16 KiB).
	MaxTokenBytes *ByteSize `yaml:"max_token_bytes"`
	// User, when set, replaces the section's user mapping for this
	// issuer's tokens.
	User *UserMapping `yaml:"user"`
}

// UserMapping holds the CEL expressions that build the user from `claims`.
type UserMapping struct {
	Identity    Expr `yaml:"identity"`
	DisplayName Expr `yaml:"display_name"`
	Permissions Expr `yaml:"permissions"`
	// Fields are extra user fields, as a LangGraph authenticate function
	// returns them (role, org, ...): a map from a field name to a CEL value
	// over the claims. Handlers read them as user.<name>; graph code as
	// config["configurable"]["langgraph_auth_user"][<name>].
	Fields ValueMap `yaml:"fields"`
}

// Authorize holds the route table and the handlers.
type Authorize struct {
	Pos Pos `yaml:"-"`
	// Routes is the route table: "langgraph" (the default), "none", or a
	// list of routes (which may include the langgraph table).
	Routes RouteSpec `yaml:"routes"`
	// Unmatched decides requests whose path maps to no event: "allow"
	// (LangGraph's behaviour, the default) or "deny".
	Unmatched string `yaml:"unmatched"`
	// CORSPreflight decides a browser's CORS preflight (OPTIONS with Origin
	// and Access-Control-Request-Method, which never carries a
	// credential): "allow" (the default: passed to the upstream, whose CORS
	// middleware answers it; it fires no event) or "authenticate".
	CORSPreflight string `yaml:"cors_preflight"`
	// RunAssistant decides the assistants:read a run on an assistant fires:
	// "optional" (the default: its handler runs, and the Python server
	// applies its filters; a denial leaves it ungranted) or "required" (a
	// denial denies the run here, also on servers that never check the
	// assistant, such as LangGraph JS).
	RunAssistant string `yaml:"run_assistant"`
	// Studio admits LangGraph Studio users on request: a CEL bool over the
	// user langgate authenticated (its claims, the request). A request that
	// carries Studio's `x-auth-scheme: langsmith` and satisfies it is
	// decided for a Studio user (handlers see user.is_studio_user, the
	// upstream a user of kind "StudioUser"). The credential is still
	// langgate's to verify; without this rule the header is only removed.
	Studio Expr `yaml:"studio"`
	// Handlers are the authorization rules, LangGraph's @auth.on handlers.
	Handlers []Handler `yaml:"handlers"`
}

// Handler is one authorization rule, registered for a (resource, action) key.
type Handler struct {
	Pos Pos `yaml:"-"`

	// On is the key: "*", "resource", "resource.action" or "*.action".
	On string `yaml:"on"`
	// Allow is a CEL boolean; false refuses the event.
	Allow Expr `yaml:"allow"`
	// Message is the denial detail when Allow is false ("Forbidden" if empty).
	Message string `yaml:"message"`
	// Status is the denial status when Allow is false (403 if zero).
	Status int `yaml:"status"`
	// Filters maps a metadata key to a CEL value (or an operator on one).
	Filters ValueMap `yaml:"filters"`
	// Metadata maps a metadata key to a CEL value stamped on writes.
	Metadata ValueMap `yaml:"metadata"`
	// NamespacePrefix, on a store handler, is a CEL list of strings put
	// before the namespace the client sent (LangGraph's
	// `value["namespace"] = (user.identity, *value["namespace"])`), so each
	// user works in a namespace of their own.
	NamespacePrefix Expr `yaml:"namespace_prefix"`
	// Shadow marks a rule being rolled out: it is evaluated for the events
	// it would take, and its result logged and counted (would_allow,
	// would_deny), but never enforced: each event is decided by the
	// handler LangGraph's precedence picks without it.
	Shadow bool `yaml:"shadow"`
}

// RouteSpec is a route table: a built-in one by name, or a list.
type RouteSpec struct {
	// Table names a built-in table ("langgraph", "none"); empty with List.
	Table string
	List  []RouteEntry
	Pos   Pos
}

// UnmarshalYAML accepts a table name or a list of routes.
func (r *RouteSpec) UnmarshalYAML(n *yaml.Node) error {
	r.Pos = Pos{Line: n.Line, Column: n.Column}
	switch n.Kind {
	case yaml.ScalarNode:
		r.Table = n.Value
		return nil
	case yaml.SequenceNode:
		return n.Decode(&r.List)
	default:
		return posErrorf(n, "routes: expected a table name (langgraph, none) or a list of routes, got %s", kindName(n))
	}
}

// yamlAlternative tells the strict checker which schema a node follows.
func (r *RouteSpec) yamlAlternative(n *yaml.Node) (reflect.Type, reflect.Value) {
	if n.Kind == yaml.SequenceNode {
		return reflect.TypeOf([]RouteEntry(nil)), reflect.ValueOf(&r.List).Elem()
	}
	return nil, reflect.Value{}
}

// RouteEntry is one route of a custom table, or an include of a built-in
// table.
type RouteEntry struct {
	Pos Pos `yaml:"-"`
	// Include inserts a built-in table ("langgraph") at this point.
	Include string `yaml:"include"`
	// MountPrefix, on an include entry, puts every route of the table under
	// a path prefix, as a LangGraph server deployed with http.mount_prefix
	// serves them ("/api": GET /api/threads/{thread_id}, ...).
	MountPrefix string `yaml:"mount_prefix"`
	// Method or Methods the route answers.
	Method  string   `yaml:"method"`
	Methods []string `yaml:"methods"`
	// Path is a template: literal segments, {param} segments, and an
	// optional final {name...} that matches the rest of the path.
	Path string `yaml:"path"`
	// Resource and Action name the event the route fires.
	Resource string `yaml:"resource"`
	Action   string `yaml:"action"`
	// Public routes need no credential and fire no event.
	Public bool `yaml:"public"`
	// Value maps a field of `value` to its source: path.NAME, query.NAME,
	// query.NAME.dotted (split on "."), body.NAME. Empty: every path
	// parameter under its own name.
	Value map[string]string `yaml:"value"`
	// RepeatedQuery is how the route's server reads a query parameter
	// given more than once, for the parameters langgate reads (the route's
	// value and the rules' request.query): refuse (the default: 400),
	// first or last.
	RepeatedQuery string `yaml:"repeated_query"`
}

// The readings of a repeated query parameter (RouteEntry.RepeatedQuery).
const (
	RepeatedQueryRefuse = "refuse"
	RepeatedQueryFirst  = "first"
	RepeatedQueryLast   = "last"
)

// Expr is a CEL expression together with where it was written.
type Expr struct {
	Source string
	Pos    Pos
	// offset is the column at which Source's first character stands, when the
	// expression is on the same line as its key (plain or quoted style).
	inline bool
	quoted bool
}

// IsZero reports whether no expression was given.
func (e Expr) IsZero() bool { return e.Source == "" && e.Pos.Line == 0 }

// At converts a position inside the expression (1-based line, 0-based
// column, as CEL reports them) to a position in the file.
func (e Expr) At(line, col int) Pos {
	if !e.inline || line > 1 {
		return Pos{Line: e.Pos.Line + max(line-1, 0), Column: e.Pos.Column}
	}
	c := e.Pos.Column + col
	if e.quoted {
		c++
	}
	return Pos{Line: e.Pos.Line, Column: c}
}

// UnmarshalYAML accepts a scalar (string, number or boolean) as expression text.
func (e *Expr) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return posErrorf(n, "expected a CEL expression (a string), got %s", kindName(n))
	}
	e.Source = n.Value
	e.Pos = Pos{Line: n.Line, Column: n.Column}
	e.inline = n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0
	e.quoted = n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0
	return nil
}

// ValueMap is an ordered map from a key to a CEL expression, optionally under
// one filter operator: `{owner: user.identity}` or
// `{tags: {$contains: "'x'"}}`; or one CEL expression that computes the
// whole map: `"'admin' in user.permissions ? {} : {'owner': user.identity}"`.
type ValueMap struct {
	Pos     Pos
	Entries []ValueEntry
	// Whole is set when the map is one expression.
	Whole *Expr
}

// ValueEntry is one key of a ValueMap.
type ValueEntry struct {
	Key string
	// Op is "" for a plain value, else the operator as written ("$eq", ...).
	Op     string
	OpPos  Pos
	Expr   Expr
	KeyPos Pos
}

// UnmarshalYAML decodes a mapping of key → expression | {operator: expression}.
func (m *ValueMap) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		m.Pos = Pos{Line: n.Line, Column: n.Column}
		m.Whole = &Expr{}
		return m.Whole.UnmarshalYAML(n)
	}
	if n.Kind != yaml.MappingNode {
		return posErrorf(n, "expected a mapping of key to CEL expression (or one CEL expression producing a map), got %s", kindName(n))
	}
	m.Pos = Pos{Line: n.Line, Column: n.Column}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.Value == "" {
			return posErrorf(k, "keys must be non-empty strings")
		}
		entry := ValueEntry{Key: k.Value, KeyPos: Pos{Line: k.Line, Column: k.Column}}
		switch v.Kind {
		case yaml.MappingNode:
			if len(v.Content) != 2 {
				return posErrorf(v, "key %q: an operator mapping has exactly one operator, e.g. {$contains: expr}", k.Value)
			}
			op := v.Content[0]
			entry.Op = op.Value
			entry.OpPos = Pos{Line: op.Line, Column: op.Column}
			if err := entry.Expr.UnmarshalYAML(v.Content[1]); err != nil {
				return err
			}
		default:
			if err := entry.Expr.UnmarshalYAML(v); err != nil {
				return err
			}
		}
		m.Entries = append(m.Entries, entry)
	}
	return nil
}

// Duration is a time.Duration written as Go duration text ("30s", "5m").
type Duration struct {
	time.Duration
	Pos Pos
}

// UnmarshalYAML parses Go duration syntax.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return posErrorf(n, "expected a duration such as 30s, got %s", kindName(n))
	}
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return posErrorf(n, "invalid duration %q (use Go syntax such as 30s or 5m)", n.Value)
	}
	if v < 0 {
		return posErrorf(n, "duration %q must not be negative", n.Value)
	}
	d.Duration, d.Pos = v, Pos{Line: n.Line, Column: n.Column}
	return nil
}

// posError carries a position out of a custom unmarshaler.
type posError struct {
	pos Pos
	msg string
}

func (e *posError) Error() string { return fmt.Sprintf("line %d: %s", e.pos.Line, e.msg) }

func posErrorf(n *yaml.Node, format string, args ...any) error {
	return &posError{pos: Pos{Line: n.Line, Column: n.Column}, msg: fmt.Sprintf(format, args...)}
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	case yaml.AliasNode:
		return "an alias"
	default:
		return "nothing"
	}
}

// LoadFile reads, expands and decodes the configuration at path. Structural
// problems are returned together as an ErrorList.
func LoadFile(path string) (*File, error) {
	return LoadFileWith(path, os.LookupEnv)
}

// LoadFileWith is LoadFile with lookup resolving ${NAME} references
// (`langgate test` gives a test file's env first).
func LoadFileWith(path string, lookup func(string) (string, bool)) (*File, error) {
	data, err := ReadBounded(path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data, lookup)
}

// ReadBounded reads a file the operator named (the configuration, a key
// list), never more than limit bytes: a larger file is an error, not a
// truncated read.
func ReadBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path) //nolint:gosec // reading the file the operator named is the point
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return data, nil
}

// Parse decodes configuration text. name labels errors (usually the file
// path); lookup resolves ${NAME} references (os.LookupEnv in production).
func Parse(name string, data []byte, lookup func(string) (string, bool)) (*File, error) {
	sink := &errorSink{file: name}
	if len(data) > MaxFileSize {
		sink.add(Pos{}, "configuration is larger than %d bytes", MaxFileSize)
		return nil, sink.err()
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		sink.addYAML(err)
		return nil, sink.err()
	}
	if len(doc.Content) == 0 {
		sink.add(Pos{Line: 1}, "configuration is empty")
		return nil, sink.err()
	}
	root := doc.Content[0]
	expandEnv(root, lookup, sink)
	checkKnownFields(root, reflect.TypeOf(File{}), sink)
	if err := sink.err(); err != nil {
		return nil, err
	}
	f := &File{Name: name}
	if err := root.Decode(f); err != nil {
		sink.addYAML(err)
		return nil, sink.err()
	}
	fillPositions(root, reflect.ValueOf(f).Elem())
	validate(f, sink)
	if err := sink.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// addYAML converts yaml.v3's errors ("yaml: line N: msg") to located errors.
func (s *errorSink) addYAML(err error) {
	var pe *posError
	if errors.As(err, &pe) {
		s.add(pe.pos, "%s", pe.msg)
		return
	}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		for _, msg := range te.Errors {
			s.add(lineOf(msg), "%s", stripLine(msg))
		}
		return
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	s.add(lineOf(msg), "%s", stripLine(msg))
}

func lineOf(msg string) Pos {
	var line int
	if _, err := fmt.Sscanf(msg, "line %d:", &line); err == nil {
		return Pos{Line: line}
	}
	return Pos{}
}

func stripLine(msg string) string {
	if strings.HasPrefix(msg, "line ") {
		if i := strings.Index(msg, ": "); i >= 0 {
			return msg[i+2:]
		}
	}
	return msg
}
