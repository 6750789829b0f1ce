{{/* Chart name, truncated to the 63-character label value limit. */}}
{{- define "goapp.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "goapp.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels shared by every object the chart renders. */}}
{{- define "goapp.labels" -}}
app.kubernetes.io/name: {{ include "goapp.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ include "goapp.chart" . }}
{{- end -}}

{{- define "goapp.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/*
Fails the render unless the weights add up to 100: Istio rejects such a
route at admission time, which surfaces much later than `helm template`.
*/}}
{{- define "goapp.checkWeights" -}}
{{- $total := 0 -}}
{{- range $v, $w := .Values.weights -}}
{{- $total = add $total $w -}}
{{- end -}}
{{- if ne (int $total) 100 -}}
{{- fail (printf "weights must add up to 100, got %d" (int $total)) -}}
{{- end -}}
{{- end -}}

{{/* The weighted destinations shared by every VirtualService route. */}}
{{- define "goapp.routeDestinations" -}}
{{- range $version, $weight := .Values.weights }}
- destination:
    host: {{ include "goapp.name" $ }}
    subset: {{ $version }}
    port:
      number: {{ $.Values.service.port }}
  weight: {{ $weight }}
{{- end }}
{{- end -}}

{{/* routing.api, checked: istio or gateway. */}}
{{- define "goapp.routingApi" -}}
{{- $api := (.Values.routing | default dict).api | default "istio" -}}
{{- if not (has $api (list "istio" "gateway")) -}}
{{- fail (printf "routing.api must be istio or gateway, got %q" $api) -}}
{{- end -}}
{{- $api -}}
{{- end -}}

{{/* The weighted backendRefs of every HTTPRoute rule: one Service per version. */}}
{{- define "goapp.backendRefs" -}}
{{- range $version, $weight := .Values.weights }}
- name: {{ include "goapp.name" $ }}-{{ $version }}
  port: {{ $.Values.service.port }}
  weight: {{ $weight }}
{{- end }}
{{- end -}}
