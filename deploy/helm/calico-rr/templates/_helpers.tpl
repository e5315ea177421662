{{/* Name of the chart, for the app.kubernetes.io/name label. */}}
{{- define "calico-rr.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Prefix of every object name: the release name, with the chart name appended unless it is already there. */}}
{{- define "calico-rr.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "calico-rr.serviceAccountName" -}}
{{- default (include "calico-rr.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Labels on every object; each template adds app.kubernetes.io/component. */}}
{{- define "calico-rr.labels" -}}
app.kubernetes.io/name: {{ include "calico-rr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: calico-rr
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator's pods (Deployment selector, Service, PDB). */}}
{{- define "calico-rr.selectorLabels" -}}
app.kubernetes.io/name: {{ include "calico-rr.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "calico-rr.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when the operator runs on Calico's etcd datastore; fails on a bad datastore setting. */}}
{{- define "calico-rr.etcd" -}}
{{- $d := .Values.datastore -}}
{{- if not (has $d.type (list "kubernetes" "etcdv3")) -}}
{{- fail (printf "datastore.type must be kubernetes or etcdv3, got %q" $d.type) -}}
{{- end -}}
{{- if eq $d.type "etcdv3" -}}
{{- if not $d.etcd.endpoints -}}
{{- fail "datastore.type etcdv3 needs datastore.etcd.endpoints (ETCD_ENDPOINTS), e.g. https://10.0.0.1:2379" -}}
{{- end -}}
{{- if not (has $d.etcd.nodeHealth (list "felix" "kubernetes")) -}}
{{- fail (printf "datastore.etcd.nodeHealth must be felix or kubernetes, got %q" $d.etcd.nodeHealth) -}}
{{- end -}}
{{- if .Values.config.create -}}
{{- fail "config.create makes a RouteReflectorConfig object, which the operator reads only with datastore.type kubernetes; on etcd put the config at /calico-rr/config/default (docs/ETCD.md)" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* "true" when the operator's pods talk to the Kubernetes API at all. */}}
{{- define "calico-rr.usesKubernetesAPI" -}}
{{- if or (not (include "calico-rr.etcd" .)) (eq .Values.datastore.etcd.nodeHealth "kubernetes") -}}
true
{{- end -}}
{{- end -}}
