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

{{/* The ServiceAccount the pods run as and RBAC binds (upstream's serviceAccount.name, default aws-node). */}}
{{- define "aws-node.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default "aws-node" }}
{{- end }}

{{/* An environment value as a string: whole numbers without an exponent (values arrive as float64). */}}
{{- define "aws-node.envValue" -}}
{{- if and (kindIs "float64" .) (eq (float64 (int64 .)) .) }}{{ int64 . }}{{ else }}{{ toString . }}{{ end }}
{{- end }}

{{/* A boolean as ipamd reads it (Go's strconv.ParseBool): "true" or "false"; anything else fails. */}}
{{- define "aws-node.bool" -}}
{{- $v := index . 1 }}
{{- if has $v (list "1" "t" "T" "true" "TRUE" "True") }}true
{{- else if has $v (list "0" "f" "F" "false" "FALSE" "False") }}false
{{- else }}{{ fail (printf "%s=%q is not a boolean (true/false, 1/0, t/f)" (index . 0) $v) }}
{{- end }}
{{- end }}

{{/*
The container's variables as a YAML map: .Values.env (upstream's chart puts every variable there,
custom networking included) merged with customNetworking.* (ours); where both say something they must
agree. MY_NODE_NAME and POD_NAMESPACE come from the downward API only.
*/}}
{{- define "aws-node.envMap" -}}
{{- $env := dict }}
{{- range $name, $value := .Values.env }}
{{- if has $name (list "MY_NODE_NAME" "POD_NAMESPACE") }}
{{- fail (printf "env.%s: set by the DaemonSet from the downward API, not in env" $name) }}
{{- end }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $env $name (include "aws-node.envValue" $value) }}
{{- end }}
{{- end }}
{{- $cn := .Values.customNetworking }}
{{- $fromEnv := get $env "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" }}
{{- if not (kindIs "invalid" $cn.enabled) }}
{{- $want := ternary "true" "false" $cn.enabled }}
{{- if and $fromEnv (ne (include "aws-node.bool" (list "env.AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" $fromEnv)) $want) }}
{{- fail (printf "customNetworking.enabled=%s and env.AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG=%s disagree: keep one of them" $want $fromEnv) }}
{{- end }}
{{- $_ := set $env "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" $want }}
{{- else if $fromEnv }}
{{- $_ := set $env "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" (include "aws-node.bool" (list "env.AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" $fromEnv)) }}
{{- else }}
{{- $_ := set $env "AWS_VPC_K8S_CNI_CUSTOM_NETWORK_CFG" "false" }}
{{- end }}
{{- range $pair := list (list "eniConfigLabelDef" "ENI_CONFIG_LABEL_DEF") (list "eniConfigAnnotationDef" "ENI_CONFIG_ANNOTATION_DEF") }}
{{- $ours := get $cn (index $pair 0) }}
{{- $theirs := get $env (index $pair 1) }}
{{- if $ours }}
{{- if and $theirs (ne $ours $theirs) }}
{{- fail (printf "customNetworking.%s=%s and env.%s=%s disagree: keep one of them" (index $pair 0) $ours (index $pair 1) $theirs) }}
{{- end }}
{{- $_ := set $env (index $pair 1) $ours }}
{{- end }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
The container environment: the variables sorted by name (the order of deploy/daemonset.yaml), then
MY_NODE_NAME and POD_NAMESPACE (the namespace of the status writer's Lease).
*/}}
{{- define "aws-node.env" -}}
{{- $env := include "aws-node.envMap" . | fromYaml }}
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

{{/*
The init container's environment: init.env (upstream's chart; the schema admits only what is
meaningful here), and from env when init.env does not set them HOST_CNI_BIN_PATH (the init container
installs the plugin there) and AWS_VPC_CNI_NODE_PORT_SUPPORT (it sets the primary interface's
rp_filter by it), as `kubectl set env` would. Empty when there is nothing to set.
*/}}
{{- define "aws-node.initEnv" -}}
{{- $env := dict }}
{{- range $name, $value := .Values.init.env }}
{{- if not (kindIs "invalid" $value) }}
{{- $_ := set $env $name (include "aws-node.envValue" $value) }}
{{- end }}
{{- end }}
{{- range $name := list "HOST_CNI_BIN_PATH" "AWS_VPC_CNI_NODE_PORT_SUPPORT" }}
{{- $value := get $.Values.env $name }}
{{- if and (hasKey $.Values.env $name) (not (kindIs "invalid" $value)) (not (hasKey $env $name)) }}
{{- $_ := set $env $name (include "aws-node.envValue" $value) }}
{{- end }}
{{- end }}
{{- range $name := keys $env | sortAlpha }}
- name: {{ $name }}
  value: {{ get $env $name | quote }}
{{- end }}
{{- end }}

{{/* A probe's timings, with upstream's livenessProbeTimeoutSeconds/readinessProbeTimeoutSeconds. */}}
{{- define "aws-node.probe" -}}
{{- $probe := deepCopy (index . 0) }}
{{- with index . 1 }}
{{- $_ := set $probe "timeoutSeconds" . }}
{{- end }}
{{- toYaml $probe }}
{{- end }}

{{/*
Every ENIConfig as a YAML map name -> {subnet, securityGroups}: ours (customNetworking.eniConfigs) and
upstream's (eniConfig.subnets.<name>.{id,securityGroups}, only with eniConfig.create, as upstream).
A name given twice fails.
*/}}
{{- define "aws-node.eniConfigs" -}}
{{- $configs := dict }}
{{- range $name, $c := .Values.customNetworking.eniConfigs }}
{{- $c = $c | default dict }}
{{- $_ := set $configs $name (dict "subnet" (required (printf "customNetworking.eniConfigs.%s.subnet is required (the subnet ID of zone %s)" $name $name) $c.subnet) "securityGroups" $c.securityGroups "subnets" $c.subnets) }}
{{- end }}
{{- if .Values.eniConfig.create }}
{{- range $name, $c := (required "eniConfig.subnets must be specified when eniConfig.create is true" .Values.eniConfig.subnets) }}
{{- if hasKey $configs $name }}
{{- fail (printf "ENIConfig %s is in both customNetworking.eniConfigs and eniConfig.subnets: keep one" $name) }}
{{- end }}
{{- $c = $c | default dict }}
{{- $_ := set $configs $name (dict "subnet" (required (printf "eniConfig.subnets.%s.id is required (the subnet ID of zone %s)" $name $name) $c.id) "securityGroups" $c.securityGroups) }}
{{- end }}
{{- end }}
{{- toYaml $configs }}
{{- end }}
