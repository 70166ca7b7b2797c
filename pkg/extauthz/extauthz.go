// Package extauthz is the Envoy adapter: it serves
// envoy.service.auth.v3.Authorization/Check by translating CheckRequest into
// a decision.Request and the Decision back into a CheckResponse. Check never
// returns a gRPC error: every outcome, including a panic or a cancelled
// context, is an explicit CheckResponse, and only OK allows.
package extauthz

import (
	"context"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/langgate/langgate/pkg/decision"
)

// Server implements the Authorization service over the engine in a Holder.
type Server struct {
	authv3.UnimplementedAuthorizationServer
	engines *decision.Holder
}

var _ authv3.AuthorizationServer = (*Server)(nil)

// New returns a Server deciding with whatever engine engines holds.
func New(engines *decision.Holder) *Server {
	return &Server{engines: engines}
}

// Check decides one request through the core's one entry point, which
// answers every outcome (no configuration yet, a panic) with a decision.
// A panic in this adapter's own translation is answered the same way.
func (s *Server) Check(ctx context.Context, req *authv3.CheckRequest) (resp *authv3.CheckResponse, _ error) {
	start := time.Now()
	var dreq *decision.Request
	defer func() {
		if r := recover(); r != nil {
			resp = denied(s.engines.Recovered(ctx, s.engines.Load(), dreq, r, start))
		}
	}()
	dreq = Translate(req)
	return Respond(s.engines.Decide(ctx, dreq)), nil
}

// Translate converts a CheckRequest to the core's Request. Headers come
// from `headers` or, with encode_raw_headers, from `header_map`.
func Translate(req *authv3.CheckRequest) *decision.Request {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	out := &decision.Request{
		Method:  h.GetMethod(),
		Path:    h.GetPath(),
		Context: attrs.GetContextExtensions(),
	}
	if hm := h.GetHeaderMap(); hm != nil && len(hm.GetHeaders()) > 0 {
		out.Headers = make(map[string]string, len(hm.GetHeaders()))
		for _, hv := range hm.GetHeaders() {
			v := hv.GetValue()
			if raw := hv.GetRawValue(); len(raw) > 0 {
				v = string(raw)
			}
			k := strings.ToLower(hv.GetKey())
			if prev, ok := out.Headers[k]; ok {
				v = prev + "," + v
			}
			out.Headers[k] = v
		}
	} else {
		out.Headers = h.GetHeaders()
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
	if raw := h.GetRawBody(); len(raw) > 0 {
		out.Body = raw
	} else if b := h.GetBody(); b != "" {
		out.Body = []byte(b)
	}
	return out
}

// Respond converts a Decision to a CheckResponse.
func Respond(d *decision.Decision) *authv3.CheckResponse {
	if !d.Allow() {
		return denied(d)
	}
	ok := &authv3.OkHttpResponse{}
	for _, hd := range d.Headers {
		ok.Headers = append(ok.Headers, &corev3.HeaderValueOption{
			Header: &corev3.HeaderValue{Key: hd.Name, Value: hd.Value},
			// Set explicitly: newer Envoys otherwise append a second copy.
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	ok.HeadersToRemove = d.RemoveHeaders
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
		DynamicMetadata: metadata(d),
	}
}

func denied(d *decision.Decision) *authv3.CheckResponse {
	dr := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)}, //nolint:gosec // 400-599: validated at load or a constant
		Body:   d.Body,
	}
	for _, hd := range d.ResponseHeaders {
		dr.Headers = append(dr.Headers, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: hd.Name, Value: hd.Value},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(grpcCode(d.Status)), Message: d.Detail},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: dr},
		DynamicMetadata: metadata(d),
	}
}

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

// metadata is the decision's summary in Envoy's dynamic metadata (namespace
// envoy.filters.http.ext_authz), for access logs.
func metadata(d *decision.Decision) *structpb.Struct {
	f := map[string]*structpb.Value{
		"decision_id": structpb.NewStringValue(d.ID),
		"outcome":     structpb.NewStringValue(string(d.Outcome)),
		"status":      structpb.NewNumberValue(float64(d.Status)),
		"reason":      structpb.NewStringValue(d.Reason),
	}
	if r := d.Resource(); r != "" {
		f["resource"] = structpb.NewStringValue(r)
		f["action"] = structpb.NewStringValue(d.Action())
	}
	if d.Handler != "" {
		f["handler"] = structpb.NewStringValue(d.Handler)
	}
	if d.Policy != "" {
		f["policy"] = structpb.NewStringValue(d.Policy)
	}
	if d.User != nil {
		f["user_id"] = structpb.NewStringValue(d.User.Identity)
	}
	return &structpb.Struct{Fields: f}
}
