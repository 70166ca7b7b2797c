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
	"os/signal"
	"strings"
	"syscall"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/langgate/langgate/examples/langgraph"
	"github.com/langgate/langgate/pkg/admin"
	"github.com/langgate/langgate/pkg/authn"
	"github.com/langgate/langgate/pkg/decision"
	"github.com/langgate/langgate/pkg/devissuer"
	"github.com/langgate/langgate/pkg/extauthz"
	"github.com/langgate/langgate/pkg/httpauthz"
	"github.com/langgate/langgate/pkg/metrics"
	"github.com/langgate/langgate/pkg/overload"
	"github.com/langgate/langgate/pkg/reload"
	"github.com/langgate/langgate/pkg/tracing"
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
	logAllows     bool
	allowSample   float64
	watch         time.Duration
	drainDelay    time.Duration
	shutdownGrace time.Duration
	pprof         bool
	traceIdentity bool
	readyWait     time.Duration
	http          httpLimits
	memoryLimit   string
	// grpcMaxStreams and grpcCheckTimeout bound the gRPC port's Checks.
	grpcMaxStreams   int
	grpcCheckTimeout time.Duration
}

// httpLimits bound what the HTTP mode holds for its clients.
type httpLimits struct {
	readTimeout, writeTimeout, idleTimeout time.Duration
	maxConns                               int
	bodyBytes                              int64
}

// adminMaxConns bounds the admin port's connections (probes and scrapers
// hold a few).
const adminMaxConns = 256

// maxHeaderBytes bounds a check request's headers in HTTP mode (Envoy's
// default request header limit is 60 KiB).
const maxHeaderBytes = 64 << 10

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var sf serveFlags
	fs.StringVar(&sf.config, "config", "", "configuration file (with --dev, defaults to the embedded LangGraph example)")
	fs.StringVar(&sf.grpcAddr, "grpc-addr", ":9001", "gRPC listen address (ext_authz Check, health, reflection)")
	fs.StringVar(&sf.adminAddr, "admin-addr", ":9090", "admin HTTP listen address (/healthz, /readyz, /metrics)")
	fs.StringVar(&sf.httpAddr, "http-addr", "", "HTTP authorization listen address for Envoy http_service (/envoy/...), nginx auth_request (/nginx) and Traefik forwardAuth (/traefik); off when empty")
	fs.BoolVar(&sf.dev, "dev", false, "development mode: start an embedded OIDC issuer on loopback and point the policy at it")
	fs.StringVar(&sf.devIssuerAddr, "dev-issuer-addr", "127.0.0.1:0", "listen address of the --dev issuer (loopback only)")
	fs.StringVar(&sf.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.StringVar(&sf.logFormat, "log-format", "json", "log format: json or text")
	fs.BoolVar(&sf.logAllows, "log-allows", false, "log allowed decisions at info level too (denials always are)")
	fs.Float64Var(&sf.allowSample, "log-allow-sample", 1, "with --log-allows, the fraction of allows logged (0..1)")
	fs.DurationVar(&sf.watch, "watch-interval", time.Second, "how often the configuration file is checked for changes (0: only on SIGHUP)")
	fs.DurationVar(&sf.drainDelay, "drain-delay", 0, "after SIGTERM, how long to keep serving while reporting not ready (let load balancers move away)")
	fs.DurationVar(&sf.shutdownGrace, "shutdown-grace", 10*time.Second, "after the drain delay, how long in-flight checks may run")
	fs.BoolVar(&sf.pprof, "pprof", false, "serve net/http/pprof on the admin port under /debug/pprof/")
	fs.DurationVar(&sf.readyWait, "ready-wait", 10*time.Second, "at startup, how long to wait for every issuer's keys before opening the check ports (the admin port opens at once); 0 opens them at once")
	fs.StringVar(&sf.memoryLimit, "memory-limit", "auto", "the Go runtime's soft memory limit: auto (90% of the cgroup's memory limit, unless GOMEMLIMIT is set), off, or a size (512MiB)")
	fs.DurationVar(&sf.http.readTimeout, "http-read-timeout", 10*time.Second, "HTTP mode: the longest a client may take to send a whole check request, body included")
	fs.DurationVar(&sf.http.writeTimeout, "http-write-timeout", 10*time.Second, "HTTP mode: the longest a client may take to read the answer")
	fs.DurationVar(&sf.http.idleTimeout, "http-idle-timeout", 30*time.Second, "HTTP mode: how long a keep-alive connection may wait for its next request")
	fs.IntVar(&sf.http.maxConns, "http-max-conns", 8192, "HTTP mode: connections held at once (size it to the proxies' connection pools: Envoy's http_service opens one per check in flight); over it, the connection that has waited longest is closed to make room")
	fs.Int64Var(&sf.http.bodyBytes, "http-body-bytes-in-flight", httpauthz.DefaultBodyBytesInFlight, "HTTP mode: request bodies held at once, in bytes, across all checks (a body over it is not read: rules that need it deny)")
	fs.IntVar(&sf.grpcMaxStreams, "grpc-max-streams", extauthz.DefaultMaxStreams, "gRPC: Checks in flight at once across all connections (each may hold up to 2 MiB while its message arrives); over it a Check is refused with RESOURCE_EXHAUSTED before it is read")
	fs.DurationVar(&sf.grpcCheckTimeout, "grpc-check-timeout", extauthz.DefaultCheckTimeout, "gRPC: the longest a Check's message may take to arrive, whatever deadline the client sent; past it the Check is ended and its connection closed")
	fs.BoolVar(&sf.traceIdentity, "trace-identity", false, "with tracing on (OTEL_* variables), record the caller's identity as enduser.id on each span")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{"serve: unexpected arguments: " + strings.Join(fs.Args(), " ")}
	}
	if sf.config == "" && !sf.dev {
		return usageError{"serve: --config is required (or --dev for the built-in example)"}
	}
	if sf.allowSample < 0 || sf.allowSample > 1 {
		return usageError{"serve: --log-allow-sample must be between 0 and 1"}
	}
	if h := sf.http; h.readTimeout <= 0 || h.writeTimeout <= 0 || h.idleTimeout <= 0 || h.maxConns < 1 || h.bodyBytes < 1 {
		return usageError{"serve: --http-read-timeout, --http-write-timeout and --http-idle-timeout must be positive, --http-max-conns and --http-body-bytes-in-flight at least 1"}
	}
	if sf.grpcMaxStreams < 1 || sf.grpcCheckTimeout <= 0 {
		return usageError{"serve: --grpc-max-streams must be at least 1 and --grpc-check-timeout positive"}
	}
	memLimit, memFrom, err := applyMemoryLimit(sf.memoryLimit)
	if err != nil {
		return usageError{"serve: " + err.Error()}
	}
	log, err := newLogger(stderr, sf.logLevel, sf.logFormat)
	if err != nil {
		return usageError{"serve: " + err.Error()}
	}
	log.Info("memory limit", "bytes", memLimit, "from", memFrom)

	tracer, err := tracing.FromEnv(ctx, os.LookupEnv, version())
	if err != nil {
		return err
	}
	defer func() {
		if err := tracer.Shutdown(5 * time.Second); err != nil {
			log.Warn("exporting the last spans failed", "error", err.Error())
		}
	}()
	if tracer != nil {
		otel.SetErrorHandler(otel.ErrorHandlerFunc(func(err error) { log.Warn("tracing", "error", err.Error()) }))
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
	source := reload.FileSource(sf.config)
	if sf.config == "" {
		source = func() (string, []byte, error) { return langgraph.PolicyName, langgraph.Policy, nil }
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	engines := decision.Holder{Log: log}
	// Under memory pressure, unverified work is shed first, then every
	// new check; the admin port is never shed (pkg/overload).
	guard := new(overload.Guard)
	go guard.Run(ctx, 0)
	adm := extauthz.NewAdmission(extauthz.Options{MaxStreams: sf.grpcMaxStreams, CheckTimeout: sf.grpcCheckTimeout, Overload: guard})
	promReg := prometheus.NewRegistry()
	m := metrics.New(promReg, &engines)
	metrics.RegisterOverload(promReg, guard, adm)
	engines.Observer = m
	reloader := &reload.Reloader{
		Source: source,
		Lookup: lookup,
		Holder: &engines,
		Build: decision.Options{Logger: log, Observer: m, TraceIdentity: sf.traceIdentity, Authn: authn.Options{Overload: guard},
			Log: decision.LogOptions{LogAllows: sf.logAllows, AllowSampleRate: sf.allowSample}},
		Recorder: m,
		Log:      log,
	}
	// The first configuration must be valid: there is nothing to fall back on.
	if err := reloader.Reload(ctx); err != nil {
		return err
	}

	// The admin port first: probes and /readyz answer while the issuers
	// fetch their keys.
	adminLn, err := net.Listen("tcp", sf.adminAddr)
	if err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	var state admin.State
	gs := extauthz.NewServerWith(&engines, tracer, adm)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	reflection.Register(gs)
	// The admin port has bounds of its own, so that a flood of it cannot
	// take the check ports' file descriptors, nor theirs its own; it is
	// never shed for memory, so readiness and metrics stay reachable.
	adminLimit := httpauthz.NewConnLimit(adminMaxConns)
	adminSrv := &http.Server{
		Handler:           admin.Handler(&engines, &state, admin.Options{Gatherer: promReg, Pprof: sf.pprof}),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// Past pprof's longest default profile (30 s).
		WriteTimeout:   time.Minute,
		IdleTimeout:    time.Minute,
		MaxHeaderBytes: maxHeaderBytes,
		ConnState:      adminLimit.ConnState,
	}

	errc := make(chan error, 3)
	go func() {
		if err := adminSrv.Serve(adminLn); !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	// The check ports open once the engine can verify tokens (or after
	// --ready-wait): a replica that is (re)starting refuses connections
	// instead of answering "no keys yet" to the Checks a proxy sends it
	// before its health checks notice, so the proxy retries another
	// replica (docs/reliability.md).
	if sf.readyWait > 0 && !waitReady(ctx, &engines, sf.readyWait) && ctx.Err() == nil {
		log.Warn("not ready after --ready-wait; opening the check ports anyway (tokens of issuers without keys are refused)", "ready_wait", sf.readyWait)
	}
	grpcLn, err := net.Listen("tcp", sf.grpcAddr)
	if err != nil {
		_ = adminSrv.Close()
		return fmt.Errorf("gRPC listener: %w", err)
	}
	var httpLn net.Listener
	if sf.httpAddr != "" {
		if httpLn, err = net.Listen("tcp", sf.httpAddr); err != nil {
			grpcLn.Close()
			_ = adminSrv.Close()
			return fmt.Errorf("HTTP authorization listener: %w", err)
		}
	}
	go func() { errc <- gs.Serve(adm.Listener(grpcLn)) }()
	state.Open()
	var httpSrv *http.Server
	if httpLn != nil {
		limit := httpauthz.NewConnLimit(sf.http.maxConns)
		httpSrv = &http.Server{
			Handler:           httpauthz.HandlerWith(&engines, log, tracer, httpauthz.Options{BodyBytesInFlight: sf.http.bodyBytes, Overload: guard}),
			ReadHeaderTimeout: min(5*time.Second, sf.http.readTimeout),
			ReadTimeout:       sf.http.readTimeout,
			WriteTimeout:      sf.http.writeTimeout,
			IdleTimeout:       sf.http.idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ConnState:         limit.ConnState,
		}
		go func() {
			if err := httpSrv.Serve(httpLn); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	go trackReadiness(ctx, &engines, &state, hs)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	interval := sf.watch
	if interval <= 0 || sf.config == "" {
		interval = 1<<63 - 1 // only SIGHUP (an embedded configuration never changes)
	}
	go reloader.Watch(ctx, interval, hup)
	attrs := []any{"grpc_addr", grpcLn.Addr().String(), "admin_addr", adminLn.Addr().String(), "tracing", tracer != nil}
	if httpLn != nil {
		attrs = append(attrs, "http_addr", httpLn.Addr().String())
	}
	log.Info("langgate serving", attrs...)

	if dev != nil {
		go printDevHelp(ctx, stdout, dev, &engines, grpcLn.Addr().String(), adminLn.Addr().String())
	}

	select {
	case <-ctx.Done():
	case err := <-errc:
		cancel()
		return fmt.Errorf("server stopped: %w", err)
	}
	// Shutdown: not ready first, so traffic moves away; keep serving for
	// the drain delay; then stop accepting and let in-flight checks finish.
	state.Drain()
	hs.Shutdown() // gRPC health: NOT_SERVING
	log.Info("shutting down", "drain_delay", sf.drainDelay, "grace", sf.shutdownGrace)
	time.Sleep(sf.drainDelay)
	done := make(chan struct{})
	go func() { gs.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(sf.shutdownGrace):
		log.Warn("in-flight checks did not finish within the grace period; stopping")
		gs.Stop()
	}
	sctx, scancel := context.WithTimeout(context.Background(), sf.shutdownGrace)
	defer scancel()
	if httpSrv != nil {
		_ = httpSrv.Shutdown(sctx)
	}
	_ = adminSrv.Shutdown(sctx)
	log.Info("stopped")
	return nil
}

// waitReady reports whether the engine in service became ready (every
// issuer has keys) within wait; it gives up early when ctx ends.
func waitReady(ctx context.Context, engines *decision.Holder, wait time.Duration) bool {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if admin.Readiness(engines, nil).Ready {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// trackReadiness mirrors readiness into the gRPC health service, so Envoy's
// gRPC health checks and Kubernetes probes agree.
func trackReadiness(ctx context.Context, engines *decision.Holder, st *admin.State, hs *health.Server) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := healthpb.HealthCheckResponse_UNKNOWN
	for {
		s := healthpb.HealthCheckResponse_NOT_SERVING
		if admin.Readiness(engines, st).Ready {
			s = healthpb.HealthCheckResponse_SERVING
		}
		if s != last && !st.Draining() {
			hs.SetServingStatus("", s)
			hs.SetServingStatus(authv3.Authorization_ServiceDesc.ServiceName, s)
			last = s
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
