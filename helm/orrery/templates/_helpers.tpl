{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "orrery.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified app name. Worker Deployments append "-<deployment>", so the release part is kept
short enough for the longest default suffix ("-sdxl-img2img").
*/}}
{{- define "orrery.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 50 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "orrery.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "orrery.labels" -}}
helm.sh/chart: {{ include "orrery.chart" . }}
{{ include "orrery.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: orrery
{{- end }}

{{/* Selector labels (immutable on Deployments: never add to these). */}}
{{- define "orrery.selectorLabels" -}}
app.kubernetes.io/name: {{ include "orrery.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Image reference; the tag defaults to the chart's appVersion. */}}
{{- define "orrery.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "orrery.routerImage" -}}
{{- if .Values.router.image.repository }}
{{- printf "%s:%s" .Values.router.image.repository (default .Chart.AppVersion .Values.router.image.tag) }}
{{- else }}
{{- include "orrery.image" . }}
{{- end }}
{{- end }}

{{- define "orrery.natsName" -}}
{{- printf "%s-nats" (include "orrery.fullname" .) }}
{{- end }}

{{/* The NATS URL every pod uses: the built-in server's Service, or the required nats.url. */}}
{{- define "orrery.natsUrl" -}}
{{- if .Values.nats.builtin.enabled }}
{{- printf "nats://%s.%s.svc:4222" (include "orrery.natsName" .) .Release.Namespace }}
{{- else }}
{{- required "nats.url is required when nats.builtin.enabled is false (e.g. --set nats.url=nats://nats.messaging:4222)" .Values.nats.url }}
{{- end }}
{{- end }}

{{/*
The worker metrics port. The cluster config has one worker.metrics_port for all deployments, so
every entry of .Values.deployments must agree on metricsPort.
*/}}
{{- define "orrery.workerMetricsPort" -}}
{{- $port := 0 }}
{{- range $name, $d := .Values.deployments }}
{{- $p := int (default 9465 $d.metricsPort) }}
{{- if and (ne $port 0) (ne $port $p) }}
{{- fail (printf "deployments.%s.metricsPort is %d but another deployment uses %d: the cluster config has a single worker.metrics_port, so all deployments must use the same port" $name $p $port) }}
{{- end }}
{{- $port = $p }}
{{- end }}
{{- if eq $port 0 }}9465{{ else }}{{ $port }}{{ end }}
{{- end }}

{{/* The worker Deployment of model deployment `name`: (dict "root" $ "name" $name). */}}
{{- define "orrery.workerName" -}}
{{- printf "%s-%s" (include "orrery.fullname" .root) .name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The `autoscaling` mapping of config.deployments.<name> as YAML ("{}" when it has none). */}}
{{- define "orrery.autoscalingOf" -}}
{{- toYaml (dig "deployments" .name "autoscaling" dict (default dict .root.Values.config)) }}
{{- end }}

{{/*
"true" when model deployment `name` is scaled by load: its config has `autoscaling` and
autoscaling.mode is router or keda. Its Deployment's replica count then belongs to the scaler.
*/}}
{{- define "orrery.isAutoscaled" -}}
{{- $as := include "orrery.autoscalingOf" . | fromYaml }}
{{- if and $as (ne .root.Values.autoscaling.mode "none") }}true{{ end }}
{{- end }}

{{/*
The replica count to render for an autoscaled Deployment: the live count when it exists (so an
upgrade does not undo the autoscaler's work; `lookup` is empty under `helm template`), else
autoscaling.initial_replicas (default min_replicas, default 1), as Ray Serve starts.
*/}}
{{- define "orrery.autoscaledReplicas" -}}
{{- $as := include "orrery.autoscalingOf" . | fromYaml }}
{{- $initial := 1 }}
{{- if hasKey $as "min_replicas" }}{{ $initial = int (get $as "min_replicas") }}{{ end }}
{{- if hasKey $as "initial_replicas" }}{{ $initial = int (get $as "initial_replicas") }}{{ end }}
{{- $live := lookup "apps/v1" "Deployment" .root.Release.Namespace (include "orrery.workerName" .) }}
{{- if and $live $live.spec (hasKey $live.spec "replicas") }}{{ $live.spec.replicas }}{{ else }}{{ $initial }}{{ end }}
{{- end }}

{{- define "orrery.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-router" (include "orrery.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The cluster config with the keys the chart owns filled in from chart values, as YAML. Also checks
that every Kubernetes deployment exists in the config and outlives the worker drain timeout.
*/}}
{{- define "orrery.clusterConfig" -}}
{{- $cfg := deepCopy (default dict .Values.config) }}
{{- $nats := deepCopy (default dict $cfg.nats) }}
{{- $_ := set $nats "url" (include "orrery.natsUrl" .) }}
{{- $_ := set $cfg "nats" $nats }}
{{- $router := deepCopy (default dict $cfg.router) }}
{{- $_ := set $router "grpc_port" (int .Values.router.grpcPort) }}
{{- $_ := set $router "metrics_port" (int .Values.router.metricsPort) }}
{{- $_ := set $cfg "router" $router }}
{{- $worker := deepCopy (default dict $cfg.worker) }}
{{- $_ := set $worker "metrics_port" (int (include "orrery.workerMetricsPort" .)) }}
{{- $_ := set $cfg "worker" $worker }}
{{- $_ := set $cfg "model_repository" .Values.modelRepository.mountPath }}
{{- $mode := .Values.autoscaling.mode }}
{{- $autoscaler := deepCopy (default dict $cfg.autoscaler) }}
{{- $_ := set $autoscaler "scale_target" (ternary "kubernetes" "none" (eq $mode "router")) }}
{{- $_ := set $autoscaler "kubernetes_namespace" .Release.Namespace }}
{{- $_ := set $autoscaler "interval_ms" (int .Values.autoscaling.intervalMs) }}
{{- /* With several routers the holder of this Lease runs the autoscaler (docs/high-availability.md). */}}
{{- $_ := set $autoscaler "leader_lease_name" (printf "%s-autoscaler" (include "orrery.fullname" .)) }}
{{- $_ := set $cfg "autoscaler" $autoscaler }}
{{- $cfgDepsW := deepCopy (default dict $cfg.deployments) }}
{{- range $name, $cd := $cfgDepsW }}
{{- if and (kindIs "map" $cd) (hasKey $cd "autoscaling") }}
{{- if not (hasKey $.Values.deployments $name) }}
{{- fail (printf "config.deployments.%s.autoscaling is set but deployments.%s is not: there is no Kubernetes Deployment to scale" $name $name) }}
{{- end }}
{{- if hasKey $cd "replicas" }}
{{- fail (printf "config.deployments.%s has both replicas and autoscaling: set autoscaling.initial_replicas (the chart's deployments.%s.replicas is ignored for autoscaled deployments)" $name $name) }}
{{- end }}
{{- $as := deepCopy $cd.autoscaling }}
{{- $_ := set $as "kubernetes_deployment" (include "orrery.workerName" (dict "root" $ "name" $name)) }}
{{- $_ := set $cd "autoscaling" $as }}
{{- end }}
{{- end }}
{{- $_ := set $cfg "deployments" $cfgDepsW }}
{{- $drainMs := int (default 60000 $worker.drain_timeout_ms) }}
{{- $cfgDeps := default dict $cfg.deployments }}
{{- range $name, $d := .Values.deployments }}
{{- if not (hasKey $cfgDeps $name) }}
{{- fail (printf "deployments.%s has no entry in config.deployments (known: %s): the worker looks its deployment up there" $name (keys $cfgDeps | sortAlpha | join ", ")) }}
{{- end }}
{{- $grace := int (default 120 $d.terminationGracePeriodSeconds) }}
{{- if le (mul $grace 1000) $drainMs }}
{{- fail (printf "deployments.%s.terminationGracePeriodSeconds (%ds) must exceed config.worker.drain_timeout_ms (%dms), or the kubelet kills replicas mid-drain" $name $grace $drainMs) }}
{{- end }}
{{- end }}
{{- toYaml $cfg }}
{{- end }}

{{/* Volumes and mounts shared by router and workers: the config file and a writable /tmp. */}}
{{- define "orrery.configVolume" -}}
- name: config
  configMap:
    name: {{ include "orrery.fullname" . }}-config
- name: tmp
  emptyDir: {}
{{- end }}

{{- define "orrery.configVolumeMounts" -}}
- name: config
  mountPath: /etc/orrery
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end }}
