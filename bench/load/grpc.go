package load

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

// checkMethod is the ext_authz v3 Check method's full name.
const checkMethod = "/envoy.service.auth.v3.Authorization/Check"

// rawCodec sends pre-encoded messages as they are and hands back the
// response's bytes, so that the load generator spends nothing on protobuf:
// on a shared machine every microsecond it saves is the server's.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) ([]byte, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("rawCodec: marshal %T", v)
	}
	return *b, nil
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("rawCodec: unmarshal %T", v)
	}
	*b = append((*b)[:0], data...)
	return nil
}

// Dial opens n gRPC connections to addr (plaintext) that send pre-encoded
// messages. Requests are spread over them in turn.
func Dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
		if err != nil {
			for _, c := range conns {
				_ = c.Close()
			}
			return nil, err
		}
		conns = append(conns, cc)
	}
	return conns, nil
}

// GRPC sends the encoded CheckRequests reqs, in turn, as
// envoy.service.auth.v3.Authorization/Check over conns; an answer is the
// expected one when its status code is OK and it carries an ok_response
// (allow[i] true) or when it is a denial (allow[i] false).
func GRPC(conns []*grpc.ClientConn, reqs [][]byte, allow []bool) Send {
	return func(i uint64) bool {
		n := i % uint64(len(reqs))
		var resp []byte
		if err := conns[i%uint64(len(conns))].Invoke(context.Background(), checkMethod, &reqs[n], &resp); err != nil {
			return false
		}
		ok, err := Allowed(resp)
		return err == nil && ok == allow[n]
	}
}

// Allowed reads an encoded CheckResponse just far enough to tell an allow
// (status code OK, an ok_response) from anything else.
func Allowed(resp []byte) (bool, error) {
	code, okResponse := int64(0), false
	for len(resp) > 0 {
		num, typ, n := protowire.ConsumeTag(resp)
		if n < 0 {
			return false, errors.New("check response: bad tag")
		}
		resp = resp[n:]
		if typ == protowire.BytesType && (num == 1 || num == 3) {
			v, m := protowire.ConsumeBytes(resp)
			if m < 0 {
				return false, errors.New("check response: bad field")
			}
			if num == 3 {
				okResponse = true
			} else if c, err := statusCode(v); err != nil {
				return false, err
			} else {
				code = c
			}
			resp = resp[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, resp)
		if m < 0 {
			return false, errors.New("check response: bad field")
		}
		resp = resp[m:]
	}
	return code == 0 && okResponse, nil
}

// statusCode is google.rpc.Status's code (field 1).
func statusCode(b []byte) (int64, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, errors.New("status: bad tag")
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, m := protowire.ConsumeVarint(b)
			if m < 0 {
				return 0, errors.New("status: bad code")
			}
			return int64(v), nil //nolint:gosec // a status code, compared with 0 only
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return 0, errors.New("status: bad field")
		}
		b = b[m:]
	}
	return 0, nil
}
