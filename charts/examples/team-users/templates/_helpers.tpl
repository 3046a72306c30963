{{- define "team-users.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The providerRefs of every UserSync: the provider, then extraProviderRefs.
Returned as YAML; fromYamlArray turns it back into a list.
*/}}
{{- define "team-users.providerRefs" -}}
{{- $refs := list (dict "kind" .Values.provider.kind "name" .Values.provider.name) }}
{{- range .Values.extraProviderRefs }}
{{- $refs = append $refs (dict "kind" (default "UserProvider" .kind) "name" .name) }}
{{- end }}
{{- toYaml $refs }}
{{- end }}
