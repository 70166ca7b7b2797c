{{/* Chart name, truncated to the 63 characters a label allows. */}}
{{- define "langgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: the release name, plus the chart name unless it already contains it. */}}
{{- define "langgate.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "langgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "langgate.labels" -}}
helm.sh/chart: {{ include "langgate.chart" . }}
{{ include "langgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: ext-authz
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Labels that select langgate's pods; never change them in an upgrade. */}}
{{- define "langgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "langgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "langgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "langgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the policy: the user's, or the chart's. */}}
{{- define "langgate.configMapName" -}}
{{- .Values.config.existingConfigMap | default (printf "%s-config" (include "langgate.fullname" .)) }}
{{- end }}

{{- define "langgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* In-cluster DNS name of the gRPC Service, as Istio's extension provider names it. */}}
{{- define "langgate.serviceHost" -}}
{{- printf "%s.%s.svc.%s" (include "langgate.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- end }}

{{/*
The MeshConfig extension provider that makes langgate an Istio CUSTOM
authorizer. istiod owns MeshConfig, so the chart prints this block in NOTES.txt
for the user to merge into their Istio installation (istiod Helm values or
IstioOperator `spec.meshConfig`); the chart tests decode it into Istio's
MeshConfig type.
*/}}
{{- define "langgate.istioMeshConfig" -}}
meshConfig:
  extensionProviders:
    - name: {{ .Values.istio.extensionProvider.name }}
      envoyExtAuthzGrpc:
        service: {{ include "langgate.serviceHost" . }}
        port: {{ .Values.grpcPort }}
        # Istio's default is 600s: a stuck langgate would hold every request
        # for ten minutes before it is refused.
        timeout: {{ .Values.istio.extensionProvider.timeout }}
        # Fail closed: unreachable or timed out means refused.
        failOpen: false
        statusOnError: {{ .Values.istio.extensionProvider.statusOnError | quote }}
        {{- if .Values.istio.extensionProvider.maxRequestBytes }}
        # Istio has no per-route body settings: this limit applies to every
        # request of the workload; a larger body gets 413.
        includeRequestBodyInCheck:
          maxRequestBytes: {{ .Values.istio.extensionProvider.maxRequestBytes | int64 }}
          allowPartialMessage: false
          packAsBytes: true
        {{- else }}
        # maxRequestBytes 0: no body is buffered or sent to langgate, for
        # policies whose rules read none (langgate validate says so).
        {{- end }}
{{- end }}
