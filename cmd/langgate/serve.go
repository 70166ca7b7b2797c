package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/langgate/langgate/examples/langgraph"
	"github.com/langgate/langgate/pkg/admin"
	"github.com/langgate/langgate/pkg/config"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/extauthz"
	"github.com/langgate/langgate/pkg/httpauthz"
)

type serveFlags struct {
	config        string
	grpcAddr      string
	adminAddr     string
	httpAddr      string
	dev           bool
	devIssuerAddr string
	logLevel      string
	logFormat     string
	shutdownGrace time.Duration
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf serveFlags
	fs.StringVar(&sf.config, "config", "", "configuration file (with --dev, defaults to the embedded LangGraph example)")
	fs.StringVar(&sf.grpcAddr, "grpc-addr", ":9001", "gRPC listen address (ext_authz Check, health, reflection)")
	fs.StringVar(&sf.adminAddr, "admin-addr", ":9090", "admin HTTP listen address (/healthz, /readyz)")
	fs.StringVar(&sf.httpAddr, "http-addr", "", "HTTP authorization listen address for Envoy http_service (/envoy/...), nginx auth_request (/nginx) and Traefik forwardAuth (/traefik); off when empty")
	fs.BoolVar(&sf.dev, "dev", false, "development mode: start an embedded OIDC issuer on loopback and point the policy at it")
	fs.StringVar(&sf.devIssuerAddr, "dev-issuer-addr", "127.0.0.1:0", "listen address of the --dev issuer (loopback only)")
	fs.StringVar(&sf.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&sf.logFormat, "log-format", "json", "log format: json or text")
	fs.DurationVar(&sf.shutdownGrace, "shutdown-grace", 10*time.Second, "how long in-flight checks may run after SIGTERM")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"serve: unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	if sf.config == "" && !sf.dev {
		return usageError{"serve: --config is required (or --dev for the built-in example)"}
	}
	log, err := newLogger(stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		return usageError{"serve: " + err.Error()}
	}

	lookup := os.LookupEnv
	var dev *devissuer.Issuer
	if sf.dev {
		if dev, err = devissuer.Start(devissuer.Options{Addr: sf.devIssuerAddr}); err != nil {
			return err
		}
		defer dev.Close()
		lookup = func(name string) (string, bool) {
			switch name {
			case "OIDC_ISSUER":
				return dev.URL, true
			case "OIDC_AUDIENCE":
				return dev.Audience, true
			}
			return os.LookupEnv(name)
		}
	}
	var f *config.File
	if sf.config != "" {
		data, err := os.ReadFile(sf.config)
		if err != nil {
			return fmt.Errorf("config: %w", err)
		}
		f, err = config.Parse(sf.config, data, lookup)
		if err != nil {
			return err
		}
	} else if f, err = config.Parse(langgraph.PolicyName, langgraph.Policy, lookup); err != nil {
		return err
	}
	eng, err := decision.Build(f, decision.Options{Logger: log})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var engines decision.Holder
	engines.Store(eng)
	eng.Start(ctx)

	grpcLn, err := net.Listen("tcp", sf.grpcAddr)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	errc := make(chan error, 3)
	adminLn, err := net.Listen("tcp", sf.adminAddr)
	if err != nil {
		grpcLn.Close()
		return fmt.Errorf("admin listener: %w", err)
	}

	var httpSrv *http.Server
	if sf.httpAddr != "" {
		httpLn, err := net.Listen("tcp", sf.httpAddr)
		if err != nil {
			grpcLn.Close()
			adminLn.Close()
			return fmt.Errorf("HTTP authorization listener: %w", err)
		}
		httpSrv = &http.Server{Handler: httpauthz.Handler(&engines, log), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
		log.Info("HTTP authorization serving", "http_addr", httpLn.Addr().String())
	}

	gs := grpc.NewServer()
	authv3.RegisterAuthorizationServer(gs, extauthz.New(&engines, log))
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	adminSrv := &http.Server{Handler: admin.Handler(&engines), ReadHeaderTimeout: 5 * time.Second}

	go func() { errc <- gs.Serve(grpcLn) }()
	go func() {
		if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	go trackReadiness(ctx, &engines, hs)
	log.Info("langgate serving", "grpc_addr", grpcLn.Addr().String(), "admin_addr", adminLn.Addr().String(), "config", f.Name)

	if dev != nil {
		go printDevHelp(ctx, stdout, dev, &engines, grpcLn.Addr().String(), adminLn.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		return fmt.Errorf("server stopped: %w", err)
	}
	log.Info("shutting down", "grace", sf.shutdownGrace)
	hs.Shutdown() // NOT_SERVING first, so health checks drain traffic
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(sf.shutdownGrace):
		gs.Stop()
	}
	sctx, scancel := context.WithTimeout(context.Background(), time.Second)
	defer scancel()
	_ = adminSrv.Shutdown(sctx)
	if httpSrv != nil {
		_ = httpSrv.Shutdown(sctx)
	}
	return nil
}

// trackReadiness mirrors readiness into the gRPC health service.
func trackReadiness(ctx context.Context, engines *decision.Holder, hs *health.Server) {
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if admin.Readiness(engines).Ready {
			st = healthpb.HealthCheckResponse_SERVING
		}
		if st != last {
			hs.SetServingStatus("", st)
			hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, st)
			last = st
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	default:
		return nil, fmt.Errorf("--log-format must be json or text, got %q", format)
	}
}
