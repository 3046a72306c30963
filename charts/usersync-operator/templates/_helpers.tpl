{{/*
Name of the chart, overridable with nameOverride.
*/}}
{{- define "usersync-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name of the release's namespaced resources: <release>-<chart>, or the
release name alone when it already contains the chart name.
*/}}
{{- define "usersync-operator.fullname" -}}
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

{{/*
Name of the release's cluster-scoped resources (ClusterRoles and their
bindings): prefixed with the release namespace, so that releases of the same
name in two namespaces (provider shards) do not overwrite each other.
*/}}
{{- define "usersync-operator.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "usersync-operator.fullname" .) | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "usersync-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every resource.
*/}}
{{- define "usersync-operator.labels" -}}
helm.sh/chart: {{ include "usersync-operator.chart" . }}
{{ include "usersync-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: usersync-operator
{{- end }}

{{/*
Labels that select the operator's Pods.
*/}}
{{- define "usersync-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "usersync-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "usersync-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "usersync-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The operator image: repository@digest, or repository:tag (tag defaults to
the appVersion).
*/}}
{{- define "usersync-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The subject every manager binding grants.
*/}}
{{- define "usersync-operator.subjects" -}}
- kind: ServiceAccount
  name: {{ include "usersync-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/*
Rules on namespaced objects, the same as in config/rbac/role.yaml (generated
from the +kubebuilder:rbac markers). Secrets are only read: the operator GETs
a provider's credentials and watches Secret metadata; it never writes them.
Events are created through events.k8s.io (the manager's event recorder).
test/chart checks that these rules and the cluster rules below cover the
generated ClusterRole and grant nothing beyond it.
*/}}
{{- define "usersync-operator.namespacedRules" -}}
- apiGroups: ["users.usersync.io"]
  resources: ["usersyncs"]
  verbs: ["get", "list", "watch", "update", "patch"]
- apiGroups: ["users.usersync.io"]
  resources: ["usersyncs/status"]
  verbs: ["get", "update"]
- apiGroups: ["users.usersync.io"]
  resources: ["usersyncs/finalizers"]
  verbs: ["update"]
- apiGroups: ["users.usersync.io"]
  resources: ["userproviders"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["users.usersync.io"]
  resources: ["userproviders/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}

{{/*
Rules on cluster-scoped objects: ClusterUserProviders (read, and their
status) and Namespaces (read, for namespaceSelector).
*/}}
{{- define "usersync-operator.clusterRules" -}}
- apiGroups: ["users.usersync.io"]
  resources: ["clusteruserproviders"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["users.usersync.io"]
  resources: ["clusteruserproviders/status"]
  verbs: ["get", "update", "patch"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/*
Checks of combinations the schema cannot express; rendered by the Deployment.
*/}}
{{- define "usersync-operator.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: without it every replica would write to the vendors" }}
{{- end }}
{{- if and .Values.serviceMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "serviceMonitor.enabled needs metrics.enabled" }}
{{- end }}
{{- if and .Values.metrics.enabled (eq (int .Values.metrics.port) (int .Values.healthPort)) }}
{{- fail "metrics.port and healthPort must differ" }}
{{- end }}
{{- end }}
