{{/*
The text of NOTES.txt. It lives in a named template so that the chart tests
can render it (helm template does not print NOTES.txt).
*/}}
{{- define "langgate.notes" -}}
{{- $fullname := include "langgate.fullname" . -}}
{{- $ns := .Release.Namespace -}}
langgate {{ .Values.image.tag | default .Chart.AppVersion }} is installed as {{ $fullname }} in namespace {{ $ns }}.

  ext_authz (gRPC):  {{ include "langgate.serviceHost" . }}:{{ .Values.grpcPort }}
  {{- if .Values.service.headless }}
  per-pod (headless): {{ $fullname }}-headless.{{ $ns }}.svc.{{ .Values.clusterDomain }}:{{ .Values.grpcPort }}
  {{- end }}
  admin:             http://{{ include "langgate.serviceHost" . }}:{{ .Values.adminPort }}/readyz

1. Wait until it is ready. A pod is ready once its policy is valid and every
   identity provider's keys are loaded; until then it denies every request.

     kubectl -n {{ $ns }} rollout status deployment/{{ $fullname }}
     kubectl -n {{ $ns }} logs deployment/{{ $fullname }}
{{- if and (not .Values.config.existingConfigMap) (contains "${OIDC_ISSUER}" .Values.config.policy) (not .Values.oidc.issuer) }}

   WARNING: the policy reads ${OIDC_ISSUER} but oidc.issuer is empty: langgate
   will not become ready. Set it, and the audience, e.g.
     helm upgrade {{ .Release.Name }} <chart> --reuse-values \
       --set oidc.issuer=https://idp.example.com/realms/main --set oidc.audience=langgraph
{{- end }}

2. Put it in front of your LangGraph server.
{{- if .Values.istio.authorizationPolicy.enabled }}

   Istio: the AuthorizationPolicy {{ .Values.istio.authorizationPolicy.name | default (printf "%s-langgraph" $fullname) }} (action CUSTOM) in namespace
   {{ .Values.istio.authorizationPolicy.namespace | default $ns }} sends the workload's requests to the extension provider
   "{{ .Values.istio.extensionProvider.name }}". Istio only knows that provider once it is in MeshConfig: merge
   this into your Istio installation (istiod Helm values, or spec.meshConfig of
   an IstioOperator), then `helm upgrade` istiod / re-run `istioctl install`:

{{ include "langgate.istioMeshConfig" . | indent 6 }}

   Istio's limits: one CUSTOM provider per workload; no per-route context
   extensions (langgate applies the policy it is configured with); the body
   limit above applies to every request of the workload.
{{- else }}

   Envoy: copy envoy/front-proxy.yaml from the langgate repository and point
   its `langgate` cluster at
     {{ if .Values.service.headless }}{{ $fullname }}-headless{{ else }}{{ $fullname }}{{ end }}.{{ $ns }}.svc.{{ .Values.clusterDomain }} port {{ .Values.grpcPort }} (health checks on port {{ .Values.adminPort }}).

   Istio: install again with istio.authorizationPolicy.enabled=true and the
   LangGraph workload's labels in istio.authorizationPolicy.selector.matchLabels;
   these notes then print the MeshConfig provider to add.
{{- end }}

3. Check it: a request without a token is refused, a public one is not.

     curl -i -X POST http://<langgraph-host>/threads/search -d '{}'   # 401
     curl -i http://<langgraph-host>/ok                                # 200

Step by step: https://github.com/langgate/langgate/blob/main/docs/deploy.md
{{- end }}
