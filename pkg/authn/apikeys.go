package authn

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/langgate/langgate/pkg/config"
)

// MaxAPIKeyFileBytes bounds an API key list.
const MaxAPIKeyFileBytes = 1 << 20

// APIKeyHashPrefix introduces a key's hash in the key list.
const APIKeyHashPrefix = "sha256:"

// HashAPIKey returns the form an API key is stored in: "sha256:" and the
// hex SHA-256 of the key. API keys are random secrets of at least 128 bits
// (GenerateAPIKey makes 256), so a fast unsalted hash is the right tool:
// there is nothing to brute-force, and checking a key costs one hash.
func HashAPIKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return APIKeyHashPrefix + hex.EncodeToString(sum[:])
}

// GenerateAPIKey returns a new random API key ("lg_" and 43 base64url
// characters, 256 bits) and its stored hash.
func GenerateAPIKey() (key, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("generating an API key: %w", err)
	}
	key = "lg_" + base64.RawURLEncoding.EncodeToString(b[:])
	return key, HashAPIKey(key), nil
}

// apiKeyEntry is one key in the key list (YAML or JSON).
type apiKeyEntry struct {
	// Hash is "sha256:<64 hex digits>", the key's HashAPIKey.
	Hash string `yaml:"hash"`
	// Identity, DisplayName and Permissions make the key's user.
	Identity    string   `yaml:"identity"`
	DisplayName string   `yaml:"display_name"`
	Permissions []string `yaml:"permissions"`
	// Claims are extra claims the user carries (visible to handlers).
	Claims map[string]any `yaml:"claims"`
	// Expires, RFC 3339, ends the key's validity.
	Expires string `yaml:"expires"`
}

type apiKey struct {
	hash    [sha256.Size]byte
	user    *User
	expires time.Time
}

type apiKeySet map[[sha256.Size]byte]*apiKey

// APIKeyStore holds an authentication section's API keys: read from an
// environment variable once and from a file that is re-read while it
// changes (a mounted Kubernetes Secret is updated in place), swapped
// atomically. A file that fails to read or parse keeps the keys held.
type APIKeyStore struct {
	cfg    config.APIKeys
	envSet apiKeySet
	now    func() time.Time
	log    *slog.Logger

	keys    atomic.Pointer[apiKeySet]
	fileSum [sha256.Size]byte

	once   sync.Once
	cancel context.CancelFunc

	reloads, failures atomic.Uint64
}

// APIKeyStats are an API key store's counters.
type APIKeyStats struct {
	// Keys is the number of keys held.
	Keys int
	// Reloads counts file changes applied; Failures those refused.
	Reloads, Failures uint64
}

// Stats returns the counters.
func (s *APIKeyStore) Stats() APIKeyStats {
	st := APIKeyStats{Reloads: s.reloads.Load(), Failures: s.failures.Load()}
	if m := s.keys.Load(); m != nil {
		st.Keys = len(*m)
	}
	return st
}

// newAPIKeyStore reads the keys once; an error is the configuration's.
func newAPIKeyStore(cfg config.APIKeys, lookup func(string) (string, bool), now func() time.Time, log *slog.Logger) (*APIKeyStore, error) {
	s := &APIKeyStore{cfg: cfg, now: now, log: log.With("api_keys", cfg.File)}
	if cfg.Env != "" {
		v, ok := lookup(cfg.Env)
		if !ok {
			return nil, fmt.Errorf("api_keys: environment variable %s is not set", cfg.Env)
		}
		set, err := parseAPIKeys([]byte(v))
		if err != nil {
			return nil, fmt.Errorf("api_keys: environment variable %s: %w", cfg.Env, err)
		}
		s.envSet = set
	}
	if cfg.File == "" {
		s.keys.Store(&s.envSet)
		return s, nil
	}
	if _, err := s.reload(); err != nil {
		return nil, fmt.Errorf("api_keys: %w", err)
	}
	return s, nil
}

// reload re-reads the file; changed reports whether the keys were swapped.
func (s *APIKeyStore) reload() (changed bool, err error) {
	data, err := config.ReadBounded(s.cfg.File, MaxAPIKeyFileBytes)
	if err != nil {
		return false, fmt.Errorf("key list: %w", err)
	}
	sum := sha256.Sum256(data)
	if s.keys.Load() != nil && sum == s.fileSum {
		return false, nil
	}
	set, err := parseAPIKeys(data)
	if err != nil {
		return false, fmt.Errorf("%s: %w", s.cfg.File, err)
	}
	for h, k := range s.envSet {
		if _, dup := set[h]; dup {
			return false, fmt.Errorf("%s: a key is also in environment variable %s", s.cfg.File, s.cfg.Env)
		}
		set[h] = k
	}
	s.fileSum = sum
	s.keys.Store(&set)
	return true, nil
}

// start re-reads the file every reload_interval until ctx ends or stop.
func (s *APIKeyStore) start(ctx context.Context) {
	if s.cfg.File == "" {
		return
	}
	s.once.Do(func() {
		ctx, s.cancel = context.WithCancel(ctx)
		go s.run(ctx)
	})
}

func (s *APIKeyStore) stop() {
	s.once.Do(func() {})
	if s.cancel != nil {
		s.cancel()
	}
}

func (s *APIKeyStore) run(ctx context.Context) {
	every := config.DefaultAPIKeysReloadInterval
	if s.cfg.ReloadInterval != nil {
		every = s.cfg.ReloadInterval.Duration
	}
	for sleep(ctx, every) {
		changed, err := s.reload()
		switch {
		case err != nil:
			s.failures.Add(1)
			s.log.Error("API key list not reloaded; keeping the keys held", "error", err)
		case changed:
			s.reloads.Add(1)
			s.log.Info("API key list reloaded", "keys", len(*s.keys.Load()))
		}
	}
}

// lookup finds the user of a key by the key's SHA-256. The map is keyed by
// the digest, not the key: the time a lookup takes depends on the digest,
// which an attacker cannot steer toward a stored one without a preimage,
// so it tells nothing about stored keys; the final comparison is constant
// time all the same.
func (s *APIKeyStore) lookup(digest [sha256.Size]byte) (*User, *Error) {
	m := s.keys.Load()
	if m == nil {
		return nil, nil
	}
	k := (*m)[digest]
	if k == nil || subtle.ConstantTimeCompare(k.hash[:], digest[:]) != 1 {
		return nil, nil
	}
	if !k.expires.IsZero() && !s.now().Before(k.expires) {
		return nil, invalid("API key expired", nil)
	}
	return k.user, nil
}

// parseAPIKeys decodes a key list strictly: a YAML (or JSON) list of
// entries, unknown fields refused, every hash well-formed and unique.
func parseAPIKeys(data []byte) (apiKeySet, error) {
	set := apiKeySet{}
	if len(bytes.TrimSpace(data)) == 0 {
		return set, nil
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parsing the key list: %w", err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.SequenceNode {
		return nil, errors.New("the key list must be a list of {hash, identity, ...} entries")
	}
	for _, n := range doc.Content[0].Content {
		var e apiKeyEntry
		if err := n.Decode(&e); err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		if err := checkEntryFields(n); err != nil {
			return nil, err
		}
		k, err := e.compile()
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n.Line, err)
		}
		if set[k.hash] != nil {
			return nil, fmt.Errorf("line %d: the same key hash is listed twice", n.Line)
		}
		set[k.hash] = k
	}
	return set, nil
}

// checkEntryFields refuses unknown fields (Node.Decode does not apply the
// decoder's KnownFields).
func checkEntryFields(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: an entry must be a mapping", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		switch k := n.Content[i]; k.Value {
		case "hash", "identity", "display_name", "permissions", "claims", "expires":
		default:
			return fmt.Errorf("line %d: unknown field %q (known fields: claims, display_name, expires, hash, identity, permissions)", k.Line, k.Value)
		}
	}
	return nil
}

func (e *apiKeyEntry) compile() (*apiKey, error) {
	hexSum, ok := strings.CutPrefix(strings.ToLower(e.Hash), APIKeyHashPrefix)
	if !ok {
		return nil, errors.New(`hash must be "sha256:" and 64 hex digits (printf %s "$KEY" | sha256sum)`)
	}
	sum, err := hex.DecodeString(hexSum)
	if err != nil || len(sum) != sha256.Size {
		return nil, errors.New("hash must be \"sha256:\" and 64 hex digits")
	}
	if e.Identity == "" || !printableASCII(e.Identity) {
		return nil, errors.New("identity is required and must be printable ASCII (it travels in a header)")
	}
	for _, p := range e.Permissions {
		if p == "" {
			return nil, errors.New("a permission is empty")
		}
	}
	k := &apiKey{}
	copy(k.hash[:], sum)
	if e.Expires != "" {
		if k.expires, err = time.Parse(time.RFC3339, e.Expires); err != nil {
			return nil, fmt.Errorf("expires %q is not an RFC 3339 time (2027-01-31T00:00:00Z)", e.Expires)
		}
	}
	// Claims go through JSON so that they have the types token claims have
	// (float64 numbers, []any, map[string]any).
	claims := map[string]any{}
	if len(e.Claims) > 0 {
		raw, err := json.Marshal(e.Claims)
		if err != nil {
			return nil, fmt.Errorf("claims: %w", err)
		}
		if err := json.Unmarshal(raw, &claims); err != nil {
			return nil, fmt.Errorf("claims: %w", err)
		}
	}
	claims["sub"] = e.Identity
	k.user = NewUser(e.Identity, e.DisplayName, append([]string(nil), e.Permissions...), claims)
	return k, nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
