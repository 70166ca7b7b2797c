// Package chart holds no code: its tests render the Helm chart in
// charts/langgate with the real helm binary (bin/helm, installed by `make
// test`, or $HELM), decode every rendered manifest strictly into its
// Kubernetes, Prometheus Operator or Istio Go type, and check what operators
// and langgate rely on: the pod's security context and probes, selectors that
// select, the values schema, the CUSTOM AuthorizationPolicy and the Istio
// MeshConfig provider printed in NOTES.txt.
package chart
