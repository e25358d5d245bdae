{{/* Chart name, overridable, trimmed to the 63-character DNS label limit. */}}
{{- define "peat-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. A release whose name already contains the chart
name is used as is, so `helm install peat-gateway .` yields "peat-gateway".
*/}}
{{- define "peat-gateway.fullname" -}}
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

{{- define "peat-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "peat-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "peat-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "peat-gateway.labels" -}}
helm.sh/chart: {{ include "peat-gateway.chart" . }}
{{ include "peat-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "peat-gateway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "peat-gateway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Image reference; a digest, when given, pins the exact image (Zarf lint wants this). */}}
{{- define "peat-gateway.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the admin token (given, or created by the chart). */}}
{{- define "peat-gateway.adminTokenSecret" -}}
{{- default (printf "%s-admin-token" (include "peat-gateway.fullname" .)) .Values.adminToken.existingSecret }}
{{- end }}

{{/* Name of the Secret holding the Postgres URL (given, or created from an inline url). */}}
{{- define "peat-gateway.databaseSecret" -}}
{{- default (printf "%s-database" (include "peat-gateway.fullname" .)) .Values.storage.postgres.existingSecret }}
{{- end }}

{{- define "peat-gateway.natsEnabled" -}}
{{- if or .Values.cdc.nats.url .Values.ingress.nats.url }}true{{ end }}
{{- end }}

{{/*
Host name of the admin UI/API under UDS: the admin gateway serves
*.admin.<domain>, the tenant gateway *.<domain>.
*/}}
{{- define "peat-gateway.publicHost" -}}
{{- if eq .Values.package.expose.gateway "admin" }}
{{- printf "%s.admin.%s" .Values.package.expose.host .Values.domain }}
{{- else }}
{{- printf "%s.%s" .Values.package.expose.host .Values.domain }}
{{- end }}
{{- end }}

{{/* Fails rendering on value combinations that cannot work. */}}
{{- define "peat-gateway.validate" -}}
{{- if not (has .Values.storage.backend (list "sqlite" "postgres")) }}
{{- fail (printf "storage.backend must be sqlite or postgres, got %q" .Values.storage.backend) }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (ne .Values.storage.backend "postgres") }}
{{- fail "replicaCount > 1 needs storage.backend=postgres: SQLite lives on one ReadWriteOnce volume" }}
{{- end }}
{{- if and (eq .Values.storage.backend "postgres") (not .Values.storage.postgres.existingSecret) (not .Values.storage.postgres.url) }}
{{- fail "storage.backend=postgres needs storage.postgres.existingSecret or storage.postgres.url" }}
{{- end }}
{{- if and .Values.vault.addr (not .Values.vault.existingSecret) }}
{{- fail "vault.addr needs vault.existingSecret holding the Vault token" }}
{{- end }}
{{- if and .Values.package.enabled .Values.sso.enabled (not .Values.domain) }}
{{- fail "sso.enabled needs domain to build the redirect URI" }}
{{- end }}
{{- end }}

{{/* An egress allow rule to an in-cluster dependency (dict: selector, remote, description). */}}
{{- define "peat-gateway.remoteRule" -}}
direction: Egress
description: {{ .description | quote }}
selector:
  {{- toYaml .selector | nindent 2 }}
remoteNamespace: {{ .remote.namespace | quote }}
{{- with .remote.selector }}
remoteSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
port: {{ .remote.port }}
{{- end }}
