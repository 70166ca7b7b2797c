package extauthz

import (
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/langgate/langgate/pkg/decision"
)

// codec is the gRPC server's codec: Check's request and response go
// through langgate's own wire code (decodeCheck, appendResponse); every
// other message (health, reflection) through grpc-go's protobuf codec.
// Its name is "proto", so clients see an ordinary application/grpc server.
type codec struct {
	proto encoding.CodecV2
}

func newCodec() codec {
	return codec{proto: encoding.GetCodecV2(proto.Name)}
}

// Name is the content subtype, the protobuf one.
func (codec) Name() string { return proto.Name }

// wireResponse is a Decision on its way to becoming a CheckResponse.
type wireResponse struct {
	d *decision.Decision
}

// responseBuffers recycles the buffers responses are encoded into; grpc-go
// returns each one after writing it. A buffer that grew past maxPooled
// (a denial with a large body) is dropped instead.
type responseBuffers struct{ pool sync.Pool }

const (
	minResponseBuffer = 4 << 10 // above grpc-go's pooling threshold
	maxPooled         = 64 << 10
)

var responses = &responseBuffers{pool: sync.Pool{New: func() any {
	b := make([]byte, 0, minResponseBuffer)
	return &b
}}}

// Get returns a buffer of length n (mem.BufferPool).
func (p *responseBuffers) Get(n int) *[]byte {
	b := p.pool.Get().(*[]byte) //nolint:forcetypeassert // the pool holds nothing else
	if cap(*b) < n {
		*b = make([]byte, n)
	}
	*b = (*b)[:n]
	return b
}

// Put takes a buffer back (mem.BufferPool).
func (p *responseBuffers) Put(b *[]byte) {
	if cap(*b) <= maxPooled {
		*b = (*b)[:0]
		p.pool.Put(b)
	}
}

// Marshal encodes a Check response from langgate's own encoder into a
// recycled buffer; anything else is protobuf's.
func (c codec) Marshal(v any) (_ mem.BufferSlice, err error) {
	r, ok := v.(*wireResponse)
	if !ok {
		return c.proto.Marshal(v)
	}
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("extauthz: encoder panic: %v", p) // the Check fails: Envoy's status_on_error
		}
	}()
	b := responses.Get(0)
	*b = appendResponse(*b, r.d)
	return mem.BufferSlice{mem.NewBuffer(b, responses)}, nil
}

// Unmarshal decodes a CheckRequest with decodeCheck; anything else with
// protobuf. A request arriving in several buffers is joined into the one
// string decodeCheck slices, with one copy either way.
func (c codec) Unmarshal(data mem.BufferSlice, v any) (err error) {
	r, ok := v.(*wireRequest)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	var s string
	if len(data) == 1 {
		s = string(data[0].ReadOnlyData())
	} else {
		var sb strings.Builder
		sb.Grow(data.Len())
		for _, b := range data {
			sb.Write(b.ReadOnlyData())
		}
		s = sb.String()
	}
	// The decoder is fuzzed against the generated code; should it still
	// panic, the request is refused, not the process killed (grpc-go
	// does not recover a codec).
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("extauthz: %w: decoder panic: %v", ErrMalformed, p)
		}
	}()
	if err := decodeCheck(s, &r.Request); err != nil {
		return fmt.Errorf("extauthz: %w", err)
	}
	return nil
}
