package routes

import (
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ErrAmbiguous is wrapped by every refusal of a request that langgate and
// an upstream could read two ways: a query parameter langgate reads given
// twice, a JSON body with a key given twice, bytes that are not UTF-8, and
// the other cases parseJSON lists. Such a request is refused (400) before
// any handler runs, never decided on one of its readings.
var ErrAmbiguous = errors.New("ambiguous request")

// MaxBodyDepth bounds the nesting of a JSON body langgate reads (the depth
// encoding/json allows); a deeper body is not read.
const MaxBodyDepth = 10_000

// maxExactInteger is 2^53: every integer below it is a float64 exactly,
// so Go, JavaScript and Python read it as the same number.
const maxExactInteger = 1 << 53

// parseJSON decodes a JSON document into the values encoding/json makes
// (map[string]any, []any, string, float64, bool, nil), holding it to the
// one reading every server shares. Beyond RFC 8259's syntax (a violation
// wraps ErrBodyNotJSON) it refuses, wrapping ErrAmbiguous, what the JSON
// parsers of the servers read differently:
//   - an object key given twice, compared after unescaping ("a" and
//     "\u0061" are one key): Go, Python and JavaScript keep the last,
//     other parsers the first;
//   - bytes that are not UTF-8 (replaced by U+FFFD in Go and JavaScript,
//     an error in orjson), and \u escapes of lone UTF-16 surrogates
//     (U+FFFD in Go, kept by JavaScript and Python's json);
//   - a byte order mark, and NUL bytes outside strings (Python's json
//     reads UTF-8 with a BOM and UTF-16 and UTF-32 documents);
//   - NaN, Infinity and -Infinity (Python's json reads them);
//   - an integer of 2^53 or more (either sign) and a number beyond float64's range
//     (rounded in Go and JavaScript, exact or infinite in Python).
func parseJSON(data []byte) (any, error) {
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		return nil, fmt.Errorf("%w: the body starts with a byte order mark", ErrAmbiguous)
	}
	p := jsonParser{data: data}
	p.space()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.data) {
		return nil, p.syntax("data after the JSON value")
	}
	return v, nil
}

type jsonParser struct {
	data []byte
	pos  int
	buf  []byte // scratch for strings with escapes
}

func (p *jsonParser) syntax(what string) error {
	return fmt.Errorf("%w: %s at offset %d", ErrBodyNotJSON, what, p.pos)
}

func (p *jsonParser) ambiguous(format string, args ...any) error {
	return fmt.Errorf("%w: "+format+" (at offset %d)", append(append([]any{ErrAmbiguous}, args...), p.pos)...)
}

func (p *jsonParser) space() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, error) {
	if depth >= MaxBodyDepth {
		return nil, p.syntax(fmt.Sprintf("nesting deeper than %d", MaxBodyDepth))
	}
	if p.pos >= len(p.data) {
		return nil, p.syntax("unexpected end")
	}
	switch c := p.data[p.pos]; {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		return p.str()
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	case c == 'N' || c == 'I':
		return nil, p.ambiguous("NaN and Infinity are not JSON, but Python's json reads them")
	case c == 0:
		return nil, p.ambiguous("a NUL byte (a UTF-16 or UTF-32 document?)")
	default:
		return nil, p.syntax(fmt.Sprintf("unexpected character %q", c))
	}
}

func (p *jsonParser) literal(word string) error {
	if len(p.data)-p.pos < len(word) || string(p.data[p.pos:p.pos+len(word)]) != word {
		return p.syntax("invalid literal")
	}
	p.pos += len(word)
	return nil
}

func (p *jsonParser) object(depth int) (any, error) {
	p.pos++ // {
	obj := map[string]any{}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return obj, nil
	}
	for {
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			if p.pos < len(p.data) && p.data[p.pos] == 0 {
				return nil, p.ambiguous("a NUL byte (a UTF-16 or UTF-32 document?)")
			}
			return nil, p.syntax("expected an object key")
		}
		at := p.pos
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		if _, dup := obj[key]; dup {
			p.pos = at
			return nil, p.ambiguous("object key %q appears twice", key)
		}
		p.space()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.syntax("expected ':'")
		}
		p.pos++
		p.space()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		obj[key] = v
		p.space()
		if p.pos >= len(p.data) {
			return nil, p.syntax("unexpected end in an object")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return obj, nil
		default:
			return nil, p.syntax("expected ',' or '}'")
		}
	}
}

func (p *jsonParser) array(depth int) (any, error) {
	p.pos++ // [
	list := []any{}
	p.space()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return list, nil
	}
	for {
		p.space()
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		list = append(list, v)
		p.space()
		if p.pos >= len(p.data) {
			return nil, p.syntax("unexpected end in an array")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return list, nil
		default:
			return nil, p.syntax("expected ',' or ']'")
		}
	}
}

// str reads a string; p.pos is at its opening quote.
func (p *jsonParser) str() (string, error) {
	p.pos++
	start := p.pos
	// The common case: no escape, ASCII or valid UTF-8, no copy to make
	// but the string itself.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		case c == '\\':
			return p.escaped(start)
		case c < 0x20:
			return "", p.syntax("control character in a string")
		case c < utf8.RuneSelf:
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.ambiguous("bytes that are not UTF-8")
			}
			p.pos += size
		}
	}
	return "", p.syntax("unterminated string")
}

// escaped finishes a string that has escapes, from start (after the
// opening quote); p.pos is at the first backslash.
func (p *jsonParser) escaped(start int) (string, error) {
	b := append(p.buf[:0], p.data[start:p.pos]...)
	defer func() { p.buf = b[:0] }()
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return string(b), nil
		case c < 0x20:
			return "", p.syntax("control character in a string")
		case c == '\\':
			if p.pos+1 >= len(p.data) {
				return "", p.syntax("unterminated escape")
			}
			e := p.data[p.pos+1]
			p.pos += 2
			switch e {
			case '"', '\\', '/':
				b = append(b, e)
			case 'b':
				b = append(b, '\b')
			case 'f':
				b = append(b, '\f')
			case 'n':
				b = append(b, '\n')
			case 'r':
				b = append(b, '\r')
			case 't':
				b = append(b, '\t')
			case 'u':
				r, err := p.hex4()
				if err != nil {
					return "", err
				}
				if utf16.IsSurrogate(r) {
					if r >= 0xDC00 || p.pos+6 > len(p.data) || p.data[p.pos] != '\\' || p.data[p.pos+1] != 'u' {
						return "", p.ambiguous("an escaped lone UTF-16 surrogate")
					}
					p.pos += 2
					lo, err := p.hex4()
					if err != nil {
						return "", err
					}
					if r = utf16.DecodeRune(r, lo); r == utf8.RuneError {
						return "", p.ambiguous("an escaped lone UTF-16 surrogate")
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				return "", p.syntax("invalid escape")
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				return "", p.ambiguous("bytes that are not UTF-8")
			}
			b = append(b, p.data[p.pos:p.pos+size]...)
			p.pos += size
		}
	}
	return "", p.syntax("unterminated string")
}

func (p *jsonParser) hex4() (rune, error) {
	if p.pos+4 > len(p.data) {
		return 0, p.syntax("short \\u escape")
	}
	var r rune
	for _, c := range p.data[p.pos : p.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, p.syntax("invalid \\u escape")
		}
	}
	p.pos += 4
	return r, nil
}

// number reads an RFC 8259 number.
func (p *jsonParser) number() (any, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
		if p.pos < len(p.data) && p.data[p.pos] == 'I' {
			return nil, p.ambiguous("NaN and Infinity are not JSON, but Python's json reads them")
		}
	}
	digits := func() int {
		n := 0
		for p.pos < len(p.data) && p.data[p.pos] >= '0' && p.data[p.pos] <= '9' {
			p.pos++
			n++
		}
		return n
	}
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case digits() == 0:
		return nil, p.syntax("invalid number")
	}
	integer := true
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		p.pos++
		integer = false
		if digits() == 0 {
			return nil, p.syntax("invalid number")
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		p.pos++
		integer = false
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if digits() == 0 {
			return nil, p.syntax("invalid number")
		}
	}
	text := string(p.data[start:p.pos])
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return nil, p.ambiguous("the number %.40s is beyond a float64's range", text)
	}
	if integer && (f >= maxExactInteger || f <= -maxExactInteger) {
		return nil, p.ambiguous("the integer %.40s is beyond ±2^53, where servers round it differently", text)
	}
	return f, nil
}
