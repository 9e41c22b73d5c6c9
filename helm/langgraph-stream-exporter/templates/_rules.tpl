{{/*
Alerting rules, as the `groups:` of a Prometheus rules file. The PrometheusRule template renders
them, and alerts/langgraph-stream-exporter.rules.yaml is this output with the default values
(make ship-generate), which the promtool unit tests in alerts/tests/ exercise. README.md has the
runbook for each alert.

Notes on the queries:
- Aggregated alerts sum `by (groupBy)` so a restarted exporter pod (new `instance`) continues the
  same series and several replicas count once.
- `le` is matched as both "5" and "5.0": prometheus_client exposes "5.0", Prometheus 3 normalises it
  to "5".
- A window without observations makes the ratios 0/0 = NaN, and NaN compares false: a quiet target
  is silent; the minimum sample counts keep a handful of probes from deciding an SLO or a trend.
*/}}

{{- define "langgraph-stream-exporter.by" -}}
{{- join ", " .Values.prometheusRule.groupBy }}
{{- end }}

{{/* le matcher for a bucket bound given as a number: le="0.32", or le=~`5(\.0)?` for integers. */}}
{{- define "langgraph-stream-exporter.leMatcher" -}}
{{- $s := toString . }}
{{- if contains "." $s }}
{{- printf "le=%q" $s }}
{{- else }}
{{- printf "le=~`%s(\\.0)?`" $s }}
{{- end }}
{{- end }}

{{/* labels: + annotations: of one alert. Arguments: dict root, name, severity, summary, description. */}}
{{- define "langgraph-stream-exporter.alertMeta" -}}
labels:
  severity: {{ .severity }}
  {{- with .root.Values.prometheusRule.alertLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  summary: {{ .summary | quote }}
  description: {{ .description | quote }}
  {{- with .root.Values.prometheusRule.runbookBaseUrl }}
  runbook_url: {{ printf "%s#%s" . (lower $.name) | quote }}
  {{- end }}
{{- end }}

{{- define "langgraph-stream-exporter.ruleGroups" -}}
{{- $r := .Values.prometheusRule }}
{{- $by := include "langgraph-stream-exporter.by" . }}
{{- $ttft := "langgraph_probe_time_to_first_token_seconds" }}
{{- $itl := "langgraph_probe_inter_token_latency_seconds" }}
groups:
  - name: langgraph-stream-exporter.availability
    rules:
      {{- if $r.probeFailing.enabled }}
      {{- $c := $r.probeFailing }}
      - alert: LangGraphProbeFailing
        expr: |-
          sum by ({{ $by }}) (increase(langgraph_probe_runs_total{outcome="failure"}[{{ $c.window }}])) >= {{ $c.minFailures }}
          and on ({{ $by }})
          max by ({{ $by }}) (langgraph_probe_success) == 0
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphProbeFailing" "severity" $c.severity
            "summary" "LangGraph probes of {{ $labels.target }} are failing"
            "description" (printf "Probes of target {{ $labels.target }} (assistant {{ $labels.assistant }}) keep failing: the last probe failed and {{ $value | printf \"%%.0f\" }} probes failed in the last %s. The reason label of langgraph_probe_runs_total says why." $c.window)
          ) | nindent 8 }}
      {{- end }}
      {{- if $r.noRecentSuccess.enabled }}
      {{- $c := $r.noRecentSuccess }}
      - alert: LangGraphProbeNoRecentSuccess
        expr: |-
          time() - max by ({{ $by }}) (langgraph_probe_last_success_timestamp_seconds) > {{ $c.afterSeconds }}
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphProbeNoRecentSuccess" "severity" $c.severity
            "summary" "No successful LangGraph probe of {{ $labels.target }} recently"
            "description" (printf "The last successful probe of target {{ $labels.target }} (assistant {{ $labels.assistant }}) was {{ $value | humanizeDuration }} ago (threshold %vs): probes fail, or no longer run." $c.afterSeconds)
          ) | nindent 8 }}
      {{- end }}
      {{- if $r.configReloadFailed.enabled }}
      {{- $c := $r.configReloadFailed }}
      - alert: LangGraphExporterConfigReloadFailed
        expr: |-
          langgraph_probe_config_last_reload_successful == 0
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphExporterConfigReloadFailed" "severity" $c.severity
            "summary" "langgraph-stream-exporter {{ $labels.instance }} failed to reload its config"
            "description" "The last reload of the targets file by the exporter at {{ $labels.instance }} failed; it keeps probing with the previous config, so target changes have not taken effect."
          ) | nindent 8 }}
      {{- end }}
      {{- if $r.exporterDown.enabled }}
      {{- $c := $r.exporterDown }}
      {{- $job := $c.job | default (include "langgraph-stream-exporter.name" .) }}
      - alert: LangGraphExporterDown
        expr: |-
          up{job="{{ $job }}"} == 0
          or
          absent(up{job="{{ $job }}"})
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphExporterDown" "severity" $c.severity
            "summary" "langgraph-stream-exporter (job {{ $labels.job }}) is down or not scraped"
            "description" "Prometheus has no successful scrape of the exporter{{ with $labels.instance }} at {{ . }}{{ end }} (job {{ $labels.job }}): its probe series go stale, so the other LangGraph alerts cannot fire and resolve instead."
          ) | nindent 8 }}
      {{- end }}
      {{- if $r.shardsIncomplete.enabled }}
      {{- $c := $r.shardsIncomplete }}
      - alert: LangGraphExporterShardsIncomplete
        expr: |-
          sum by (job, location) (langgraph_probe_shard_targets)
            != max by (job, location) (langgraph_probe_shard_configured_targets)
          or
          count by (job, location) (langgraph_probe_shard_info)
            < max by (job, location) (langgraph_probe_shards)
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphExporterShardsIncomplete" "severity" $c.severity
            "summary" "The shards of {{ $labels.job }} do not cover the targets file"
            "description" "The exporter shards of job {{ $labels.job }}{{ with $labels.location }} at location {{ . }}{{ end }} do not add up to the configured targets: a shard is not scraped, or the shards disagree on the targets file or on LGSE_SHARDS (a rollout or reload that did not finish). Some targets are not probed, or are probed twice."
          ) | nindent 8 }}
      {{- end }}
      {{- if $r.certExpiry.enabled }}
      {{- $c := $r.certExpiry }}
      - alert: LangGraphProbeCertificateExpiring
        expr: |-
          min by ({{ $by }}) (langgraph_probe_ssl_earliest_cert_expiry) - time() < {{ $c.days }} * 86400
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphProbeCertificateExpiring" "severity" $c.severity
            "summary" "The TLS certificate of {{ $labels.target }} expires soon"
            "description" (printf "The TLS certificate served to probes of target {{ $labels.target }} (assistant {{ $labels.assistant }}) expires in {{ $value | humanizeDuration }} (threshold %v days)." $c.days)
          ) | nindent 8 }}
      {{- end }}
      {{- if $r.streamBuffered.enabled }}
      {{- $c := $r.streamBuffered }}
      - alert: LangGraphProbeStreamBuffered
        expr: |-
          avg by ({{ $by }}) (avg_over_time(langgraph_probe_stream_buffered[{{ $c.window }}])) >= {{ $c.ratio }}
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphProbeStreamBuffered" "severity" $c.severity
            "summary" "The stream of {{ $labels.target }} is buffered on the way"
            "description" (printf "Tokens of target {{ $labels.target }} (assistant {{ $labels.assistant }}) arrive in bursts no model produces in {{ $value | humanizePercentage }} of the last %s: a proxy, ingress or gateway holds the SSE stream back, which raises TTFT and hides inter-token latency." $c.window)
          ) | nindent 8 }}
      {{- end }}
  {{- if $r.ttftSLO.enabled }}
  {{- $s := $r.ttftSLO }}
  {{- $le := include "langgraph-stream-exporter.leMatcher" $s.thresholdSeconds }}
  - name: langgraph-stream-exporter.ttft-slo
    rules:
      {{- range $burn := list (dict "name" "LangGraphTTFTBudgetBurnFast" "c" $s.fastBurn "speed" "fast") (dict "name" "LangGraphTTFTBudgetBurnSlow" "c" $s.slowBurn "speed" "steadily") }}
      {{- $c := $burn.c }}
      - alert: {{ $burn.name }}
        expr: |-
          (
            1 - (
              sum by ({{ $by }}) (rate({{ $ttft }}_bucket{ {{- $le -}} }[{{ $c.longWindow }}]))
              /
              sum by ({{ $by }}) (rate({{ $ttft }}_count[{{ $c.longWindow }}]))
            )
          ) > ({{ $c.factor }} * (1 - {{ $s.objective }}))
          and on ({{ $by }})
          (
            1 - (
              sum by ({{ $by }}) (rate({{ $ttft }}_bucket{ {{- $le -}} }[{{ $c.shortWindow }}]))
              /
              sum by ({{ $by }}) (rate({{ $ttft }}_count[{{ $c.shortWindow }}]))
            )
          ) > ({{ $c.factor }} * (1 - {{ $s.objective }}))
          and on ({{ $by }})
          sum by ({{ $by }}) (increase({{ $ttft }}_count[{{ $c.longWindow }}])) >= {{ $s.minSamples }}
        for: {{ $c.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" $ "name" $burn.name "severity" $c.severity
            "summary" (printf "Time to first token of {{ $labels.target }} burns its SLO error budget %s" $burn.speed)
            "description" (printf "{{ $value | humanizePercentage }} of probes of target {{ $labels.target }} (assistant {{ $labels.assistant }}) over the last %s took longer than %vs to the first token, %vx the error rate the %v objective allows (also over the last %s)." $c.longWindow $s.thresholdSeconds $c.factor $s.objective $c.shortWindow)
          ) | nindent 8 }}
      {{- end }}
  {{- end }}
  {{- if $r.regression.enabled }}
  {{- $g := $r.regression }}
  {{- $w := $g.window }}
  - name: langgraph-stream-exporter.regression
    rules:
      {{- $q := printf "histogram_quantile(0.95, sum by (%s, le) (rate(%s_bucket[%s])))" $by $ttft $w }}
      {{- $qAgo := printf "histogram_quantile(0.95, sum by (%s, le) (rate(%s_bucket[%s] offset 1w)))" $by $ttft $w }}
      - alert: LangGraphTTFTRegression
        expr: |-
          {{ $q }}
            > {{ $g.factor }} * {{ $qAgo }}
          and on ({{ $by }})
          {{ $q }} > {{ $g.ttft.floorSeconds }}
          and on ({{ $by }})
          sum by ({{ $by }}) (increase({{ $ttft }}_count[{{ $w }}])) >= {{ $g.ttft.minSamples }}
          and on ({{ $by }})
          sum by ({{ $by }}) (increase({{ $ttft }}_count[{{ $w }}] offset 1w)) >= {{ $g.ttft.minSamples }}
        for: {{ $g.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphTTFTRegression" "severity" $g.severity
            "summary" "p95 time to first token of {{ $labels.target }} regressed week over week"
            "description" (printf "p95 time to first token of target {{ $labels.target }} (assistant {{ $labels.assistant }}) is {{ $value | humanizeDuration }} over the last %s, more than %vx the same window a week ago (floor %vs)." $w $g.factor $g.ttft.floorSeconds)
          ) | nindent 8 }}
      {{- $byNode := printf "%s, node" $by }}
      {{- $q := printf "histogram_quantile(0.95, sum by (%s, le) (rate(%s_bucket[%s])))" $byNode $itl $w }}
      {{- $qAgo := printf "histogram_quantile(0.95, sum by (%s, le) (rate(%s_bucket[%s] offset 1w)))" $byNode $itl $w }}
      - alert: LangGraphITLRegression
        expr: |-
          {{ $q }}
            > {{ $g.factor }} * {{ $qAgo }}
          and on ({{ $byNode }})
          {{ $q }} > {{ $g.itl.floorSeconds }}
          and on ({{ $byNode }})
          sum by ({{ $byNode }}) (increase({{ $itl }}_count[{{ $w }}])) >= {{ $g.itl.minSamples }}
          and on ({{ $byNode }})
          sum by ({{ $byNode }}) (increase({{ $itl }}_count[{{ $w }}] offset 1w)) >= {{ $g.itl.minSamples }}
        for: {{ $g.for }}
        {{- include "langgraph-stream-exporter.alertMeta" (dict "root" . "name" "LangGraphITLRegression" "severity" $g.severity
            "summary" "p95 inter-token latency of {{ $labels.target }}/{{ $labels.node }} regressed week over week"
            "description" (printf "p95 inter-token latency of node {{ $labels.node }} of target {{ $labels.target }} (assistant {{ $labels.assistant }}) is {{ $value | humanizeDuration }} over the last %s, more than %vx the same window a week ago (floor %vs)." $w $g.factor $g.itl.floorSeconds)
          ) | nindent 8 }}
  {{- end }}
{{- end }}
