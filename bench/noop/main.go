// Command noop is the baseline of bench/checkload: an ext_authz v3 server
// that decides nothing. It allows every Check with one header, the way a
// naive server written in an afternoon would: grpc-go's defaults, the
// generated service, the default protobuf codec. langgate's gRPC path is
// measured against it on the same machine with the same load.
//
//	go run ./bench/noop [-addr 127.0.0.1:0] [-header x-noop]   (prints "LISTEN host:port")
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/reflection"
)

type server struct {
	authv3.UnimplementedAuthorizationServer
	header string
}

// Check allows everything and adds one header (x-noop: 1).
func (s server) Check(context.Context, *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	return &authv3.CheckResponse{
		Status: &rpcstatus.Status{Code: int32(code.Code_OK)},
		HttpResponse: &authv3.CheckResponse_OkResponse{OkResponse: &authv3.OkHttpResponse{
			Headers: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: s.header, Value: "1"}}},
		}},
	}, nil
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	header := flag.String("header", "x-noop", "the header every allow adds (behind the shipped Envoy configs: one they let an answer set, x-langgate-*)")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
	fmt.Println("LISTEN", ln.Addr())
	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, server{header: *header})
	// Reflection, so that ghz (bench/checkload -ghz) can call it as it calls langgate.
	reflection.Register(gs)
	if err := gs.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "noop:", err)
		os.Exit(1)
	}
}
