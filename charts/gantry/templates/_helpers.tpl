{{/* Chart name, overridable. */}}
{{- define "gantry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: the release name when it already contains the chart name. */}}
{{- define "gantry.fullname" -}}
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

{{- define "gantry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object of the release. */}}
{{- define "gantry.labels" -}}
helm.sh/chart: {{ include "gantry.chart" . }}
{{ include "gantry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: gantry
{{- end }}

{{/* Labels that select the operator pods (immutable in a Deployment: keep them few). */}}
{{- define "gantry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gantry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "gantry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gantry.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gantry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* "true" when several replicas share the work through kopf peering. */}}
{{- define "gantry.peering" -}}
{{- if gt (int .Values.replicaCount) 1 }}true{{ end }}
{{- end }}

{{/* "true" when the operator watches the whole cluster: an explicit choice (clusterWide).
A namespace list, the narrower choice, wins over it (the dev cluster's values choose
cluster-wide; a test may still name namespaces). */}}
{{- define "gantry.clusterwide" -}}
{{- if and .Values.clusterWide (not .Values.config.watchNamespaces) }}true{{ end }}
{{- end }}

{{/* The watched namespaces as JSON: the list given, else the release's own; [] cluster-wide. */}}
{{- define "gantry.watchNamespaces" -}}
{{- if include "gantry.clusterwide" . }}[]
{{- else }}
{{- toJson (.Values.config.watchNamespaces | default (list .Release.Namespace)) }}
{{- end }}
{{- end }}

{{/* Namespaces holding Triton pods, for NetworkPolicies: explicit, watched, or the release's. */}}
{{- define "gantry.tritonNamespaces" -}}
{{- $ns := .Values.networkPolicy.namespaces | default (include "gantry.watchNamespaces" . | fromJsonArray) | default (list .Release.Namespace) }}
{{- toJson $ns }}
{{- end }}

{{/* The operator configuration file: `config` without unset (null) fields. */}}
{{- define "gantry.configFile" -}}
{{- $cfg := dict }}
{{- range $key, $value := .Values.config }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $cfg $key $value }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "watchNamespaces" (include "gantry.watchNamespaces" . | fromJsonArray) }}
{{- toYaml $cfg }}
{{- end }}
