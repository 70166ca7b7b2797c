// Package routes turns a request's method and raw path into LangGraph events:
// it normalizes the path (once, before anything else looks at it), matches it
// against a precompiled route table, and assembles each event's `value` from
// path parameters, the query string and the JSON body.
package routes

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// MaxPathLength bounds the raw :path (query included) langgate accepts.
const MaxPathLength = 8 << 10

// ErrBadPath is wrapped by every normalization failure.
var ErrBadPath = errors.New("invalid request path")

// Target is a normalized request target.
type Target struct {
	// Path is the canonical path: dot segments resolved, duplicate and
	// trailing slashes removed, unreserved characters decoded.
	Path string
	// Segments are the path's segments, fully percent-decoded.
	Segments []string
	// Query is the parsed query string (see eachQueryPair for its one
	// reading); RawQuery is the query as it came, without the "?".
	Query    url.Values
	RawQuery string
}

// Normalize canonicalizes a raw :path as Envoy sends it (query included,
// nothing decoded). Anything ambiguous is refused rather than guessed:
// control characters, malformed percent-encoding, and encoded slashes or
// backslashes, which upstreams disagree about, and percent-encoding that
// decodes to invalid UTF-8 (overlong forms such as %C0%AF, lone bytes such
// as %FF), which the LangGraph servers read two ways: the JS server keeps
// the escape as it came, the Python server replaces it with U+FFFD.
func Normalize(raw string) (Target, error) {
	if len(raw) > MaxPathLength {
		return Target{}, fmt.Errorf("%w: longer than %d bytes", ErrBadPath, MaxPathLength)
	}
	if raw == "" || raw[0] != '/' {
		return Target{}, fmt.Errorf("%w: must start with /", ErrBadPath)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c < 0x21 || c >= 0x7f {
			return Target{}, fmt.Errorf("%w: byte 0x%02x at offset %d is not allowed", ErrBadPath, c, i)
		}
	}
	if i := strings.IndexByte(raw, '#'); i >= 0 {
		raw = raw[:i]
	}
	rawPath, rawQuery, _ := strings.Cut(raw, "?")
	for i := 0; i < len(rawPath); i++ {
		// RFC 3986 path characters only: anything else (" < > \ ^ ` { | })
		// is not a URI, and upstreams would each repair it differently.
		if c := rawPath[i]; c != '/' && c != '%' && !isPchar(c) {
			return Target{}, fmt.Errorf("%w: character %q at offset %d is not allowed in a path", ErrBadPath, c, i)
		}
	}
	var query url.Values // nil when there is none: nothing to parse
	if rawQuery != "" {
		var err error
		if query, err = parseQuery(rawQuery); err != nil {
			return Target{}, err
		}
	}
	t, ok := canonical(rawPath)
	if !ok {
		var err error
		if t, err = slowPath(rawPath); err != nil {
			return Target{}, err
		}
	}
	t.Query, t.RawQuery = query, rawQuery
	return t, nil
}

// canonical is Normalize's common case: a path already in canonical form
// (no percent-encoding, no empty, "." or ".." segment, no trailing slash)
// is its own canonical form, and its segments are substrings of it.
func canonical(rawPath string) (Target, bool) {
	if len(rawPath) < 2 || strings.IndexByte(rawPath, '%') >= 0 || rawPath[len(rawPath)-1] == '/' {
		return Target{}, false
	}
	segs := make([]string, 0, strings.Count(rawPath, "/"))
	for rest := rawPath[1:]; ; {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" || seg == "." || seg == ".." {
			return Target{}, false
		}
		segs = append(segs, seg)
		if !more {
			break
		}
		rest = tail
	}
	return Target{Path: rawPath, Segments: segs}, true
}

// slowPath normalizes a path that is not already canonical.
func slowPath(rawPath string) (Target, error) {
	pathLen := len(rawPath)
	segs := make([]string, 0, 8)
	for len(rawPath) > 0 {
		var seg string
		seg, rawPath, _ = strings.Cut(strings.TrimLeft(rawPath, "/"), "/")
		if seg == "" {
			continue
		}
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return Target{}, fmt.Errorf("%w: malformed percent-encoding in %q", ErrBadPath, seg)
		}
		if !utf8.ValidString(dec) {
			return Target{}, fmt.Errorf("%w: segment %q decodes to invalid UTF-8", ErrBadPath, seg)
		}
		if strings.ContainsAny(dec, "/\\\x00") {
			return Target{}, fmt.Errorf("%w: encoded slash, backslash or NUL in segment %q", ErrBadPath, seg)
		}
		switch dec {
		case ".":
			continue
		case "..":
			if len(segs) > 0 {
				segs = segs[:len(segs)-1]
			}
			continue
		}
		segs = append(segs, dec)
	}
	var b strings.Builder
	b.Grow(pathLen + 1) // never longer than the raw path
	for _, s := range segs {
		b.WriteByte('/')
		escapeSegment(&b, s)
	}
	if b.Len() == 0 {
		b.WriteByte('/')
	}
	return Target{Path: b.String(), Segments: segs}, nil
}

// escapeSegment writes a decoded segment in canonical form: RFC 3986 pchar
// characters as themselves, every other byte as %XX (upper case). A raw
// segment never grows: what was literal stays literal, and what needs
// escaping arrived escaped.
func escapeSegment(b *strings.Builder, s string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		if isPchar(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
}

// isPchar reports RFC 3986 pchar = unreserved / sub-delims / ":" / "@".
func isPchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0
}
