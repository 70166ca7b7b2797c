package decision

import (
	"testing"

	"github.com/langgate/langgate/pkg/routes"
)

// TestBodyState: every way a transport can hand over a body, and what the
// core makes of it. Only a body the headers (or Envoy's mark) vouch for is
// complete; anything in doubt is truncated or not sent, and rules that
// read it fail closed.
func TestBodyState(t *testing.T) {
	const body = `{"a":1}`
	for _, c := range []struct {
		name    string
		req     Request
		want    routes.BodyState
		comment string
	}{
		{"GET without body", Request{Method: "GET"}, routes.BodyComplete, ""},
		{"content-length matches", Request{Method: "POST", Body: []byte(body), Headers: map[string]string{"content-length": "7"}}, routes.BodyComplete, ""},
		{"content-length 0, empty", Request{Method: "POST", Headers: map[string]string{"content-length": "0"}}, routes.BodyComplete, ""},
		{"content-length larger than the body", Request{Method: "POST", Body: []byte(body), Headers: map[string]string{"content-length": "70"}}, routes.BodyTruncated, ""},
		{"content-length but no body", Request{Method: "POST", Headers: map[string]string{"content-length": "7"}}, routes.BodyNotSent, ""},
		{"content-length malformed", Request{Method: "POST", Body: []byte(body), Headers: map[string]string{"content-length": "seven"}}, routes.BodyTruncated, ""},
		{"content-length negative", Request{Method: "POST", Body: []byte(body), Headers: map[string]string{"content-length": "-1"}}, routes.BodyTruncated, ""},
		{"chunked, nothing forwarded", Request{Method: "POST", Headers: map[string]string{"transfer-encoding": "chunked"}}, routes.BodyNotSent, ""},
		{"chunked, forwarded", Request{Method: "POST", Body: []byte(body), Headers: map[string]string{"transfer-encoding": "chunked"}}, routes.BodyComplete, ""},
		{"Envoy cut the body", Request{Method: "POST", Body: []byte(body), Headers: map[string]string{headerPartial: "true"}}, routes.BodyTruncated, ""},
		{"Envoy mark, any case", Request{Method: "POST", Body: []byte(body), Headers: map[string]string{headerPartial: "TRUE", "content-length": "7"}}, routes.BodyTruncated, ""},
		{"transport cut the body", Request{Method: "POST", Body: []byte(body), BodyPartial: true}, routes.BodyTruncated, ""},
		{"HTTP/2 empty write without the mark", Request{Method: "PUT"}, routes.BodyNotSent, "Envoy may not have been asked for the body"},
		{"HTTP/2 empty write with the mark", Request{Method: "PATCH", Headers: map[string]string{headerPartial: "false"}}, routes.BodyComplete, ""},
		{"HTTP/2 empty DELETE", Request{Method: "DELETE"}, routes.BodyNotSent, ""},
		{"HTTP/2 body", Request{Method: "POST", Body: []byte(body)}, routes.BodyComplete, ""},
		{"transport never carries bodies", Request{Method: "POST", Body: []byte(body), BodyUnavailable: true, Headers: map[string]string{"content-length": "7"}}, routes.BodyNotSent, "nginx"},
		{"unknown length, empty write", Request{Method: "POST", BodyLengthUnknown: true, Headers: map[string]string{"content-length": "0"}}, routes.BodyNotSent, "an HTTP check request's own length"},
		{"unknown length, empty GET", Request{Method: "GET", BodyLengthUnknown: true}, routes.BodyComplete, ""},
		{"unknown length, body", Request{Method: "POST", Body: []byte(body), BodyLengthUnknown: true, Headers: map[string]string{"content-length": "7"}}, routes.BodyComplete, ""},
		{"unknown length, cut", Request{Method: "POST", Body: []byte(body), BodyLengthUnknown: true, BodyPartial: true}, routes.BodyTruncated, ""},
	} {
		if got := bodyState(&c.req); got != c.want {
			t.Errorf("%s: %v, want %v %s", c.name, got, c.want, c.comment)
		}
	}
}
