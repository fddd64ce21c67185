{{/* Labels shared by every object of the chart. */}}
{{- define "aws-node.labels" -}}
k8s-app: aws-node
app.kubernetes.io/name: aws-node
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The image: repository:tag, the tag defaulting to the chart's appVersion. */}}
{{- define "aws-node.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{- define "aws-node.initImage" -}}
{{- printf "%s:%s" (.Values.init.image.repository | default .Values.image.repository) (.Values.init.image.tag | default .Values.image.tag | default .Chart.AppVersion) }}
{{- end }}

{{/* An environment value as a string: whole numbers without an exponent (values arrive as float64). */}}
{{- define "aws-node.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/*
The container environment: .Values.env plus the custom networking settings, sorted by name (the order
of deploy/daemonset.yaml), then MY_NODE_NAME and POD_NAMESPACE (the namespace of the status writer's Lease).
*/}}
{{- define "aws-node.env" -}}
{{- $env := dict }}
{{- $derived := list "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" "ENI_CONFIG_LABEL_DEF" "ENI_CONFIG_ANNOTATION_DEF" "MY_NODE_NAME" "POD_NAMESPACE" }}
{{- range $name, $value := .Values.env }}
{{- if has $name $derived }}
{{- fail (printf "env.%s: set it with customNetworking.enabled / eniConfigLabelDef / eniConfigAnnotationDef (MY_NODE_NAME and POD_NAMESPACE are the downward API's), not in env" $name) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $env $name (include "aws-node.envValue" $value) }}
{{- end }}
{{- end }}
{{- $cn := .Values.customNetworking }}
{{- $_ := set $env "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" (ternary "true" "false" $cn.enabled) }}
{{- with $cn.eniConfigLabelDef }}
{{- $_ := set $env "ENI_CONFIG_LABEL_DEF" . }}
{{- end }}
{{- with $cn.eniConfigAnnotationDef }}
{{- $_ := set $env "ENI_CONFIG_ANNOTATION_DEF" . }}
{{- end }}
{{- range $name := keys $env | sortAlpha }}
- name: {{ $name }}
  value: {{ get $env $name | quote }}
{{- end }}
- name: MY_NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- end }}
