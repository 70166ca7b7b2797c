package routes

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// The query string has one reading in langgate, the one every upstream
// parser we know of shares (Go's url.ParseQuery, Python's
// urllib.parse.parse_qsl as Starlette calls it, the WHATWG
// application/x-www-form-urlencoded parser of URLSearchParams and Hono):
// pairs separated by "&", empty pieces skipped, name and value split at
// the first "=" (no "=": an empty value), "+" is a space, then
// percent-decoding as UTF-8. Where those parsers part ways, the query is
// refused: a ";" (older Pythons and Go split on it), malformed
// percent-encoding (kept as text by some, an error for others) and
// escapes that decode to invalid UTF-8 (replaced by U+FFFD in one place,
// kept in another). What remains is how servers resolve a name given
// twice, which a route table decides (Table.Repeats).

// eachQueryPair calls fn with every decoded pair of a raw query string
// (without the "?"), in order, and stops at the first error.
func eachQueryPair(raw string, fn func(name, value string) error) error {
	for raw != "" {
		var piece string
		piece, raw, _ = strings.Cut(raw, "&")
		if piece == "" {
			continue
		}
		if strings.IndexByte(piece, ';') >= 0 {
			return fmt.Errorf("%w: query: a \";\" in %q (some servers split pairs on it, others do not)", ErrBadPath, piece)
		}
		rawName, rawValue, _ := strings.Cut(piece, "=")
		name, err := unescapeQuery(rawName)
		if err != nil {
			return fmt.Errorf("%w: query parameter name %q: %w", ErrBadPath, rawName, err)
		}
		value, err := unescapeQuery(rawValue)
		if err != nil {
			return fmt.Errorf("%w: query parameter %q: %w", ErrBadPath, name, err)
		}
		if err := fn(name, value); err != nil {
			return err
		}
	}
	return nil
}

// unescapeQuery decodes one name or value: "+" is a space, then %XX.
func unescapeQuery(s string) (string, error) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		if !utf8.ValidString(s) {
			return "", fmt.Errorf("is not UTF-8")
		}
		return s, nil
	}
	dec, err := url.QueryUnescape(s)
	if err != nil {
		return "", fmt.Errorf("malformed percent-encoding")
	}
	if !utf8.ValidString(dec) {
		return "", fmt.Errorf("decodes to invalid UTF-8")
	}
	return dec, nil
}

// parseQuery reads a raw query string into its values.
func parseQuery(raw string) (url.Values, error) {
	q := url.Values{}
	err := eachQueryPair(raw, func(name, value string) error {
		q[name] = append(q[name], value)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return q, nil
}

// CanonicalQuery is the canonical form of a raw query string (without the
// "?") that a signed context binds (langgate.v1.RequestBinding.query): its
// pairs in the order given, each name and value percent-encoded except for
// RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~), as "name=value"
// joined by "&". Two queries have the same canonical form exactly when
// every parser reads the same pairs from them. A query langgate refuses
// (see Normalize) has none: the error says why. The JS and Python
// verifiers (auth.mjs, auth.py) compute the same form from the query their
// server parsed.
func CanonicalQuery(raw string) (string, error) {
	var b strings.Builder
	err := eachQueryPair(raw, func(name, value string) error {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		escapeUnreserved(&b, name)
		b.WriteByte('=')
		escapeUnreserved(&b, value)
		return nil
	})
	if err != nil {
		return "", err
	}
	return b.String(), nil
}

// escapeUnreserved writes s with every byte but RFC 3986's unreserved
// characters as %XX (upper-case hex).
func escapeUnreserved(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
}
