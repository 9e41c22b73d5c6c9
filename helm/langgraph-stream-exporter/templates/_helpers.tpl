{{/*
Chart name, truncated at 63 characters because some Kubernetes name fields are limited to this.
*/}}
{{- define "langgraph-stream-exporter.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name (release-chart, or the release name alone when it already contains the
chart name), truncated at 63 characters for the same reason.
*/}}
{{- define "langgraph-stream-exporter.fullname" -}}
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
Chart name and version, as used by the helm.sh/chart label.
*/}}
{{- define "langgraph-stream-exporter.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Namespace of every object.
*/}}
{{- define "langgraph-stream-exporter.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels. helm.sh/chart changes with every chart version, so it never goes into selectors.
*/}}
{{- define "langgraph-stream-exporter.labels" -}}
helm.sh/chart: {{ include "langgraph-stream-exporter.chart" . }}
{{ include "langgraph-stream-exporter.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: langgraph-stream-exporter
{{- end }}

{{/*
Selector labels: stable across upgrades.
*/}}
{{- define "langgraph-stream-exporter.selectorLabels" -}}
app.kubernetes.io/name: {{ include "langgraph-stream-exporter.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Service account name.
*/}}
{{- define "langgraph-stream-exporter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "langgraph-stream-exporter.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Image reference: [registry/]repository:tag[@digest]; the tag defaults to the chart's appVersion.
*/}}
{{- define "langgraph-stream-exporter.image" -}}
{{- $repo := .Values.image.repository }}
{{- if .Values.image.registry }}
{{- $repo = printf "%s/%s" (trimSuffix "/" .Values.image.registry) $repo }}
{{- end }}
{{- $ref := printf "%s:%s" $repo (default .Chart.AppVersion .Values.image.tag) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
ConfigMap holding config.yaml (the targets file), and the directory it is mounted at. The image's
default CMD reads the same path.
*/}}
{{- define "langgraph-stream-exporter.configMapName" -}}
{{- include "langgraph-stream-exporter.fullname" . }}
{{- end }}

{{- define "langgraph-stream-exporter.configDir" -}}
/etc/langgraph-stream-exporter
{{- end }}

{{/*
Where the web-config Secret and the TLS Secret are mounted: beside the ConfigMap's directory, not
inside it (a mount point inside a read-only ConfigMap volume cannot be created).
*/}}
{{- define "langgraph-stream-exporter.webConfigDir" -}}
/etc/langgraph-stream-exporter-web
{{- end }}

{{- define "langgraph-stream-exporter.webTlsDir" -}}
/etc/langgraph-stream-exporter-tls
{{- end }}

{{/*
A liveness or readiness probe from values, with scheme HTTPS on its httpGet when the web-config
file turns TLS on (web.config.tls). /healthz and /readyz need no basic auth (docs/RELIABILITY.md),
so no credentials go into the pod spec. Called with (list $ .Values.livenessProbe).
*/}}
{{- define "langgraph-stream-exporter.probeScheme" -}}
{{- $root := index . 0 }}
{{- $probe := deepCopy (index . 1) }}
{{- if and $root.Values.web.config.tls (hasKey $probe "httpGet") }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/*
Scheme of /metrics for the ServiceMonitor: serviceMonitor.scheme, else https when TLS is on.
*/}}
{{- define "langgraph-stream-exporter.metricsScheme" -}}
{{- default (ternary "https" "http" .Values.web.config.tls) .Values.serviceMonitor.scheme }}
{{- end }}

{{/*
The rendered targets file. One definition, so the ConfigMap and the checksum annotation agree.
*/}}
{{- define "langgraph-stream-exporter.configYaml" -}}
{{- toYaml .Values.config }}
{{- end }}

{{/*
Pod annotations that roll the pods when the targets file changes.
*/}}
{{- define "langgraph-stream-exporter.configChecksum" -}}
checksum/config: {{ include "langgraph-stream-exporter.configYaml" . | sha256sum }}
{{- end }}

{{/*
The exporter container. Shared by the standalone Deployment and the sidecar example, so both run
the same command with the same security context and probes. From a parent chart (this chart as a
dependency with alias lgse), in a pod template:
  containers:
    - {{ include "langgraph-stream-exporter.container" .Subcharts.lgse | nindent 6 | trim }}
*/}}
{{- define "langgraph-stream-exporter.container" -}}
name: exporter
image: {{ include "langgraph-stream-exporter.image" . | quote }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
args:
  - run
  - --config
  - {{ include "langgraph-stream-exporter.configDir" . }}/config.yaml
  - --listen
  - {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
{{- $web := .Values.web }}
{{- if hasKey (.Values.env | default dict) "LGSE_GRACE_PERIOD_S" }}
{{- fail "env.LGSE_GRACE_PERIOD_S is derived from terminationGracePeriodSeconds minus shutdownMarginSeconds: set those instead" }}
{{- end }}
env:
  {{- /* The time running probes get after SIGTERM: what Kubernetes grants the pod, minus the
  time the process needs afterwards to stop its HTTP server and flush spans. */}}
  - name: LGSE_GRACE_PERIOD_S
    value: {{ max 1 (sub (int .Values.terminationGracePeriodSeconds) (int .Values.shutdownMarginSeconds)) | toString | quote }}
  {{- if eq .Values.mode "statefulset" }}
  {{- /* One shard per pod: the StatefulSet ordinal in the hostname (name-K) picks it. */}}
  - name: LGSE_SHARDS
    value: {{ .Values.replicaCount | toString | quote }}
  - name: LGSE_SHARD
    value: "auto"
  {{- end }}
  {{- with .Values.location }}
  - name: LGSE_LOCATION
    value: {{ . | quote }}
  {{- end }}
  {{- range $name, $value := .Values.env }}
  - name: {{ $name }}
    value: {{ $value | toString | quote }}
  {{- end }}
  {{- if .Values.apiKey.existingSecret }}
  - name: {{ .Values.apiKey.envName }}
    valueFrom:
      secretKeyRef:
        name: {{ .Values.apiKey.existingSecret }}
        key: {{ .Values.apiKey.key }}
  {{- end }}
  {{- if $web.enableLifecycle }}
  - name: LGSE_WEB_ENABLE_LIFECYCLE
    value: "true"
  {{- end }}
  {{- if $web.config.existingSecret }}
  - name: LGSE_WEB_CONFIG_FILE
    value: {{ printf "%s/%s" (include "langgraph-stream-exporter.webConfigDir" .) $web.config.key | quote }}
  {{- end }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
ports:
  - name: http
    containerPort: {{ .Values.containerPort }}
    protocol: TCP
{{- with .Values.livenessProbe }}
livenessProbe:
  {{- include "langgraph-stream-exporter.probeScheme" (list $ .) | nindent 2 }}
{{- end }}
{{- /* NOTE: in sidecar mode the pod is the LangGraph server's: an exporter that is not ready
must never take the server out of its Service, so the sidecar has no readiness probe. */}}
{{- if ne .Values.mode "sidecar" }}
{{- with .Values.readinessProbe }}
readinessProbe:
  {{- include "langgraph-stream-exporter.probeScheme" (list $ .) | nindent 2 }}
{{- end }}
{{- end }}
{{- with .Values.resources }}
resources:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumeMounts:
  - name: exporter-config
    mountPath: {{ include "langgraph-stream-exporter.configDir" . }}
    readOnly: true
  - name: exporter-tmp
    mountPath: /tmp
  {{- if $web.config.existingSecret }}
  - name: exporter-web-config
    mountPath: {{ include "langgraph-stream-exporter.webConfigDir" . }}
    readOnly: true
  {{- end }}
  {{- if $web.tlsSecret }}
  - name: exporter-web-tls
    mountPath: {{ include "langgraph-stream-exporter.webTlsDir" . }}
    readOnly: true
  {{- end }}
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
The volumes the exporter container mounts: the targets file and a writable /tmp.
*/}}
{{- define "langgraph-stream-exporter.volumes" -}}
- name: exporter-config
  configMap:
    name: {{ include "langgraph-stream-exporter.configMapName" . }}
- name: exporter-tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- with .Values.web.config.existingSecret }}
- name: exporter-web-config
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.web.tlsSecret }}
- name: exporter-web-tls
  secret:
    secretName: {{ . }}
    defaultMode: 0440
{{- end }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}
