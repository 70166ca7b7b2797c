package extauthz

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/langgate/langgate/pkg/decision"
)

// ErrMalformed is wrapped by every error decoding a CheckRequest: the
// message is not valid protobuf, or a string field langgate reads is not
// UTF-8 (which proto3 requires of a string). gRPC refuses such a request
// with an error status before any decision, which Envoy answers with its
// status_on_error: closed.
var ErrMalformed = errors.New("malformed CheckRequest")

// Field numbers of the parts of envoy.service.auth.v3.CheckRequest that
// langgate reads; everything else (peers, TLS, metadata, the request
// time) is skipped without being decoded.
const (
	fieldAttributes = 1 // CheckRequest.attributes

	fieldRequest           = 4  // AttributeContext.request
	fieldContextExtensions = 10 // AttributeContext.context_extensions

	fieldHTTP = 2 // AttributeContext.Request.http

	fieldHTTPID        = 1  // HttpRequest.id
	fieldHTTPMethod    = 2  // HttpRequest.method
	fieldHTTPHeaders   = 3  // HttpRequest.headers
	fieldHTTPPath      = 4  // HttpRequest.path
	fieldHTTPHost      = 5  // HttpRequest.host
	fieldHTTPScheme    = 6  // HttpRequest.scheme
	fieldHTTPQuery     = 7  // HttpRequest.query
	fieldHTTPFragment  = 8  // HttpRequest.fragment
	fieldHTTPProtocol  = 10 // HttpRequest.protocol
	fieldHTTPBody      = 11 // HttpRequest.body
	fieldHTTPRawBody   = 12 // HttpRequest.raw_body
	fieldHTTPHeaderMap = 13 // HttpRequest.header_map

	fieldHeaderMapHeaders = 1 // HeaderMap.headers
	fieldHeaderKey        = 1 // HeaderValue.key
	fieldHeaderValue      = 2 // HeaderValue.value
	fieldHeaderRawValue   = 3 // HeaderValue.raw_value

	fieldMapKey   = 1 // a map entry's key
	fieldMapValue = 2 // a map entry's value
)

// wireRequest is a CheckRequest decoded straight into the core's Request
// (see decodeCheck).
type wireRequest struct {
	decision.Request
}

// httpFields is what decodeHTTP collects before the Request is assembled.
type httpFields struct {
	method, path, body string
	rawBody            []byte
	headers            map[string]string
	headerMap          [][3]string // key, value, raw_value
}

// decodeCheck decodes an encoded CheckRequest into out. It reads exactly
// what the generated types hold (the test's translateRef) — the method, path,
// headers (or header_map), body and context extensions — with protobuf's
// merge rules (a repeated singular field merges, a repeated map key keeps
// the last value), and skips the rest. s is the message, copied once out
// of gRPC's buffers; every string of the Request is a substring of it, so
// decoding allocates the headers map and the body, not a string per
// header. (Nothing keeps a request's strings past its decision: caches are
// keyed by hashes, and hold what was decoded from the token.)
func decodeCheck(s string, out *decision.Request) error {
	var h httpFields
	var ctxExt map[string]string
	err := fields(s, func(num protowire.Number, typ protowire.Type, v string) error {
		if num != fieldAttributes || typ != protowire.BytesType {
			return nil
		}
		return fields(v, func(num protowire.Number, typ protowire.Type, v string) error {
			if typ != protowire.BytesType {
				return nil
			}
			switch num {
			case fieldRequest:
				return fields(v, func(num protowire.Number, typ protowire.Type, v string) error {
					if num != fieldHTTP || typ != protowire.BytesType {
						return nil
					}
					return decodeHTTP(v, &h)
				})
			case fieldContextExtensions:
				if ctxExt == nil {
					ctxExt = make(map[string]string, 2)
				}
				return mapEntry(v, ctxExt, "context_extensions")
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	out.Method, out.Path, out.Context = h.method, h.path, ctxExt
	if len(h.headerMap) > 0 {
		out.Headers = make(map[string]string, len(h.headerMap))
		for _, hv := range h.headerMap {
			k, v := strings.ToLower(hv[0]), hv[1]
			if hv[2] != "" {
				v = hv[2]
			}
			if prev, ok := out.Headers[k]; ok {
				v = prev + "," + v
			}
			out.Headers[k] = v
		}
	} else {
		out.Headers = h.headers
		if out.Headers == nil {
			out.Headers = map[string]string{}
		}
	}
	if out.Method == "" {
		out.Method = out.Headers[":method"]
	}
	if out.Path == "" {
		out.Path = out.Headers[":path"]
	}
	switch {
	case len(h.rawBody) > 0:
		out.Body = h.rawBody
	case h.body != "":
		out.Body = []byte(h.body)
	}
	return nil
}

// decodeHTTP decodes one AttributeContext.HttpRequest into h, merging with
// what an earlier occurrence left there.
func decodeHTTP(s string, h *httpFields) error {
	return fields(s, func(num protowire.Number, typ protowire.Type, v string) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fieldHTTPMethod:
			h.method = v
		case fieldHTTPPath:
			h.path = v
		case fieldHTTPBody:
			h.body = v
		case fieldHTTPRawBody:
			h.rawBody = []byte(v)
			return nil // bytes: any content
		case fieldHTTPHeaders:
			if h.headers == nil {
				h.headers = make(map[string]string, 16)
			}
			return mapEntry(v, h.headers, "headers")
		case fieldHTTPHeaderMap:
			return fields(v, func(num protowire.Number, typ protowire.Type, v string) error {
				if num != fieldHeaderMapHeaders || typ != protowire.BytesType {
					return nil
				}
				return decodeHeaderValue(v, h)
			})
		case fieldHTTPID, fieldHTTPHost, fieldHTTPScheme, fieldHTTPQuery, fieldHTTPFragment, fieldHTTPProtocol:
			// Not read, but strings: as invalid as the generated code finds them.
		default:
			return nil
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%w: HttpRequest field %d is not UTF-8", ErrMalformed, num)
		}
		return nil
	})
}

// decodeHeaderValue appends one header_map entry (core.v3.HeaderValue).
func decodeHeaderValue(s string, h *httpFields) error {
	var kv [3]string
	err := fields(s, func(num protowire.Number, typ protowire.Type, v string) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case fieldHeaderKey, fieldHeaderValue:
			if !utf8.ValidString(v) {
				return fmt.Errorf("%w: header_map field %d is not UTF-8", ErrMalformed, num)
			}
			kv[num-1] = v
		case fieldHeaderRawValue:
			kv[2] = v
		}
		return nil
	})
	if err != nil {
		return err
	}
	h.headerMap = append(h.headerMap, kv)
	return nil
}

// mapEntry decodes one map<string, string> entry into m: a missing key or
// value is "", a repeated one keeps its last occurrence.
func mapEntry(s string, m map[string]string, name string) error {
	var k, v string
	err := fields(s, func(num protowire.Number, typ protowire.Type, b string) error {
		if typ != protowire.BytesType || (num != fieldMapKey && num != fieldMapValue) {
			return nil
		}
		if !utf8.ValidString(b) {
			return fmt.Errorf("%w: %s entry is not UTF-8", ErrMalformed, name)
		}
		if num == fieldMapKey {
			k = b
		} else {
			v = b
		}
		return nil
	})
	if err != nil {
		return err
	}
	m[k] = v
	return nil
}

// fields calls f for each field of the encoded message s, in order, with
// a length-delimited field's content as v ("" for other wire types, which
// are checked and skipped). Wire-level errors wrap ErrMalformed.
func fields(s string, f func(num protowire.Number, typ protowire.Type, v string) error) error {
	for len(s) > 0 {
		num, typ, n := consumeTag(s)
		if n < 0 || num < protowire.MinValidNumber {
			return fmt.Errorf("%w: bad field tag", ErrMalformed)
		}
		s = s[n:]
		if typ == protowire.BytesType {
			l, m := consumeVarint(s)
			if m < 0 || l > uint64(len(s)-m) { //nolint:gosec // len(s)-m >= 0
				return fmt.Errorf("%w: field %d overruns the message", ErrMalformed, num)
			}
			end := m + int(l) //nolint:gosec // l <= len(s)-m, checked above
			v := s[m:end]
			s = s[end:]
			if err := f(num, typ, v); err != nil {
				return err
			}
			continue
		}
		m := skip(num, typ, s)
		if m < 0 {
			return fmt.Errorf("%w: field %d: bad value", ErrMalformed, num)
		}
		s = s[m:]
		if err := f(num, typ, ""); err != nil {
			return err
		}
	}
	return nil
}

// skip measures a field value that is not length-delimited; negative
// when it is malformed.
func skip(num protowire.Number, typ protowire.Type, s string) int {
	switch typ {
	case protowire.VarintType:
		_, n := consumeVarint(s)
		return n
	case protowire.Fixed32Type:
		if len(s) < 4 {
			return -1
		}
		return 4
	case protowire.Fixed64Type:
		if len(s) < 8 {
			return -1
		}
		return 8
	case protowire.StartGroupType:
		// Deprecated groups: protowire checks and measures them over a
		// byte copy of the rest. Envoy never sends one.
		return protowire.ConsumeFieldValue(num, typ, []byte(s))
	}
	return -1 // an end-group without its start, or a reserved wire type
}

// consumeTag is protowire.ConsumeTag over a string.
func consumeTag(s string) (protowire.Number, protowire.Type, int) {
	v, n := consumeVarint(s)
	if n < 0 || v>>3 > uint64(protowire.MaxValidNumber) {
		return 0, 0, -1
	}
	return protowire.Number(v >> 3), protowire.Type(v & 7), n
}

// consumeVarint is protowire.ConsumeVarint over a string: the value and
// its length, or a negative length when s does not start with a varint.
func consumeVarint(s string) (uint64, int) {
	var v uint64
	for i := 0; i < len(s) && i < 10; i++ {
		b := s[i]
		if i == 9 && b > 1 {
			return 0, -1 // overflows 64 bits
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			return v, i + 1
		}
	}
	return 0, -1
}
