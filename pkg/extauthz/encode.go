package extauthz

import (
	"math"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/langgate/langgate/pkg/decision"
)

// Field numbers of envoy.service.auth.v3.CheckResponse and the messages
// it carries, as langgate writes them.
const (
	respStatus          = 1 // CheckResponse.status (google.rpc.Status)
	respDenied          = 2 // CheckResponse.denied_response
	respOK              = 3 // CheckResponse.ok_response
	respDynamicMetadata = 4 // CheckResponse.dynamic_metadata (google.protobuf.Struct)

	statusCode    = 1 // google.rpc.Status.code
	statusMessage = 2 // google.rpc.Status.message

	deniedStatus  = 1 // DeniedHttpResponse.status (envoy.type.v3.HttpStatus)
	deniedHeaders = 2 // DeniedHttpResponse.headers
	deniedBody    = 3 // DeniedHttpResponse.body
	httpStatus    = 1 // HttpStatus.code

	okHeaders         = 2 // OkHttpResponse.headers
	okHeadersToRemove = 5 // OkHttpResponse.headers_to_remove

	optionHeader       = 1 // HeaderValueOption.header
	optionAppendAction = 3 // HeaderValueOption.append_action
	headerKey          = 1 // HeaderValue.key
	headerValue        = 2 // HeaderValue.value

	structFields = 1 // Struct.fields (map<string, Value>)
	valueNumber  = 2 // Value.number_value
	valueString  = 3 // Value.string_value
)

// appendResponse appends d as an encoded CheckResponse: the same message
// the generated types would give (see the test's reference), written
// directly, so answering allocates nothing beyond the buffer. The
// dynamic metadata's fields come in a fixed order.
func appendResponse(b []byte, d *decision.Decision) []byte {
	if d.Allow() {
		b = appendMessage(b, respStatus, func(b []byte) []byte { return b })
		b = appendMessage(b, respOK, func(b []byte) []byte {
			for _, h := range d.Headers {
				b = appendHeaderOption(b, okHeaders, h)
			}
			for _, name := range d.RemoveHeaders {
				b = protowire.AppendTag(b, okHeadersToRemove, protowire.BytesType)
				b = protowire.AppendString(b, name)
			}
			return b
		})
	} else {
		b = appendMessage(b, respStatus, func(b []byte) []byte {
			b = appendVarintField(b, statusCode, uint64(grpcCode(d.Status))) //nolint:gosec // gRPC codes are 0-16
			return appendStringField(b, statusMessage, d.Detail)
		})
		b = appendMessage(b, respDenied, func(b []byte) []byte {
			b = appendMessage(b, deniedStatus, func(b []byte) []byte {
				return appendVarintField(b, httpStatus, uint64(d.Status)) //nolint:gosec // 400-599: validated at load or a constant
			})
			for _, h := range d.ResponseHeaders {
				b = appendHeaderOption(b, deniedHeaders, h)
			}
			return appendStringField(b, deniedBody, d.Body)
		})
	}
	return appendMessage(b, respDynamicMetadata, func(b []byte) []byte {
		b = appendStringEntry(b, "decision_id", d.ID)
		b = appendStringEntry(b, "outcome", string(d.Outcome))
		b = appendMessage(b, structFields, func(b []byte) []byte {
			b = appendStringField(b, fieldMapKey, "status")
			return appendMessage(b, fieldMapValue, func(b []byte) []byte {
				b = protowire.AppendTag(b, valueNumber, protowire.Fixed64Type)
				return protowire.AppendFixed64(b, math.Float64bits(float64(d.Status)))
			})
		})
		b = appendStringEntry(b, "reason", d.Reason)
		if r := d.Resource(); r != "" {
			b = appendStringEntry(b, "resource", r)
			b = appendStringEntry(b, "action", d.Action())
		}
		if d.Handler != "" {
			b = appendStringEntry(b, "handler", d.Handler)
		}
		if d.Policy != "" {
			b = appendStringEntry(b, "policy", d.Policy)
		}
		if d.User != nil {
			b = appendStringEntry(b, "user_id", d.User.Identity)
		}
		return b
	})
}

// appendHeaderOption appends one HeaderValueOption that overwrites the
// header (set explicitly: newer Envoys otherwise append a second copy).
func appendHeaderOption(b []byte, num protowire.Number, h decision.Header) []byte {
	return appendMessage(b, num, func(b []byte) []byte {
		b = appendMessage(b, optionHeader, func(b []byte) []byte {
			b = appendStringField(b, headerKey, h.Name)
			return appendStringField(b, headerValue, h.Value)
		})
		return appendVarintField(b, optionAppendAction, uint64(corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD))
	})
}

// appendStringEntry appends a Struct field holding a string Value.
func appendStringEntry(b []byte, key, value string) []byte {
	return appendMessage(b, structFields, func(b []byte) []byte {
		b = appendStringField(b, fieldMapKey, key)
		return appendMessage(b, fieldMapValue, func(b []byte) []byte {
			// Always written: a Value with no kind set is not a string.
			b = protowire.AppendTag(b, valueString, protowire.BytesType)
			return protowire.AppendString(b, value)
		})
	})
}

// appendStringField appends a proto3 string field, omitted when empty.
func appendStringField(b []byte, num protowire.Number, s string) []byte {
	if s == "" {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

// appendVarintField appends a proto3 scalar field, omitted when zero.
func appendVarintField(b []byte, num protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// appendMessage appends field num holding the message body writes. The
// length is reserved as one byte and the body moved up in the rare case it
// needs more, so nothing is encoded twice.
func appendMessage(b []byte, num protowire.Number, body func([]byte) []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	at := len(b)
	b = append(b, 0)
	b = body(b)
	n := len(b) - at - 1
	if n < 0x80 {
		b[at] = byte(n) //nolint:gosec // n < 0x80
		return b
	}
	extra := protowire.SizeVarint(uint64(n)) - 1
	for range extra {
		b = append(b, 0)
	}
	copy(b[at+1+extra:], b[at+1:at+1+n])
	protowire.AppendVarint(b[:at], uint64(n))
	return b
}

// grpcCode is the gRPC status code of a denial with HTTP status status.
func grpcCode(status int) code.Code {
	switch {
	case status == 400:
		return code.Code_INVALID_ARGUMENT
	case status == 401:
		return code.Code_UNAUTHENTICATED
	case status == 404:
		return code.Code_NOT_FOUND
	case status == 429:
		return code.Code_RESOURCE_EXHAUSTED
	case status >= 500:
		return code.Code_UNAVAILABLE
	default:
		return code.Code_PERMISSION_DENIED
	}
}
