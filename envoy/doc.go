// Package envoy holds no code: its directory ships the Envoy v3 configurations
// users copy to put langgate in front of a LangGraph server (front-proxy.yaml,
// front-proxy-mtls.yaml), and its tests prove each of them parses into the
// go-control-plane Bootstrap with every typed config resolved and validated,
// and keeps the security settings langgate relies on (fail closed, V3, short
// timeouts, bounded request bodies, protected-by-default routes).
package envoy
