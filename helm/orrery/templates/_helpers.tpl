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
{{- if .Values.router.tls.enabled }}
{{- $tls := dict "cert_file" "/var/run/secrets/orrery/tls/tls.crt" "key_file" "/var/run/secrets/orrery/tls/tls.key" }}
{{- if .Values.router.tls.clientCA }}{{ $_ := set $tls "client_ca_file" "/var/run/secrets/orrery/tls/ca.crt" }}{{ end }}
{{- $_ := set $router "tls" $tls }}
{{- end }}
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

{{/* The Secret holding the NATS passwords (keys router-password, worker-password). */}}
{{- define "orrery.natsAuthSecretName" -}}
{{- default (printf "%s-nats-auth" (include "orrery.fullname" .)) .Values.nats.auth.existingSecret }}
{{- end }}

{{/*
The NATS subject permissions of the router and worker users, as JSON. They must equal
natsPermissions(prefix) in services/common/nats-permissions.ts (the chart test compares them).
*/}}
{{- define "orrery.natsPermissions" -}}
{{- $p := default "orrery" (dig "nats" "prefix" "" (default dict .Values.config)) }}
{{- $bucket := printf "%s_payloads" (replace "." "_" $p) }}
{{- $s := printf "OBJ_%s" $bucket }}
{{- $router := dict
  "publish" (list (printf "%s.replica.*.batch" $p) (printf "%s.replica.*.cancel" $p) (printf "%s.hb-request" $p) (printf "%s.scale.*" $p) (printf "%s.autoscaler.>" $p) (printf "%s.jobs.>" $p) "$JS.API.>" "$JS.ACK.>" "$JS.FC.>" "$KV.>" "$O.>")
  "subscribe" (list (printf "%s.hb.*" $p) (printf "%s.router.*.>" $p) (printf "%s.scale.*" $p) (printf "%s.autoscaler.>" $p) (printf "_INBOX.%s.router.>" $p)) }}
{{- $streamApi := list (printf "$JS.API.STREAM.INFO.%s" $s) (printf "$JS.API.STREAM.CREATE.%s" $s) (printf "$JS.API.STREAM.PURGE.%s" $s) (printf "$JS.API.STREAM.MSG.GET.%s" $s) (printf "$JS.API.STREAM.MSG.DELETE.%s" $s) (printf "$JS.API.DIRECT.GET.%s" $s) (printf "$JS.API.DIRECT.GET.%s.>" $s) (printf "$JS.API.CONSUMER.CREATE.%s" $s) (printf "$JS.API.CONSUMER.CREATE.%s.>" $s) (printf "$JS.API.CONSUMER.INFO.%s.>" $s) (printf "$JS.API.CONSUMER.DELETE.%s.>" $s) (printf "$JS.API.CONSUMER.MSG.NEXT.%s.>" $s) (printf "$JS.FC.%s.>" $s) }}
{{- $worker := dict
  "publish" (concat (list (printf "%s.hb.*" $p) (printf "%s.router.*.reply.>" $p) (printf "%s.router.*.progress.>" $p) "$JS.API.INFO") $streamApi (list (printf "$O.%s.>" $bucket)))
  "subscribe" (list (printf "%s.replica.*.batch" $p) (printf "%s.replica.*.cancel" $p) (printf "%s.hb-request" $p) (printf "_INBOX.%s.worker.>" $p)) }}
{{- toJson (dict "router" $router "worker" $worker) }}
{{- end }}

{{/* NATS credentials of a role's container: (dict "root" $ "role" "router"|"worker"). */}}
{{- define "orrery.natsAuthEnv" -}}
{{- if .root.Values.nats.auth.enabled }}
- name: ORRERY_NATS_USER
  value: {{ get .root.Values.nats.auth (printf "%sUser" .role) | quote }}
- name: ORRERY_NATS_PASSWORD_FILE
  value: /var/run/secrets/orrery/nats/password
{{- end }}
{{- if .root.Values.nats.tls.enabled }}
{{- if .root.Values.nats.builtin.enabled }}
{{- fail "nats.tls is for an external NATS (nats.builtin.enabled=false): the built-in NATS serves plain TCP inside the namespace" }}
{{- end }}
- name: ORRERY_NATS_TLS_CA_FILE
  value: /var/run/secrets/orrery/nats-tls/ca.crt
{{- if .root.Values.nats.tls.clientCert }}
- name: ORRERY_NATS_TLS_CERT_FILE
  value: /var/run/secrets/orrery/nats-tls/tls.crt
- name: ORRERY_NATS_TLS_KEY_FILE
  value: /var/run/secrets/orrery/nats-tls/tls.key
{{- end }}
{{- end }}
{{- end }}

{{- define "orrery.natsAuthVolumeMounts" -}}
{{- if .Values.nats.auth.enabled }}
- name: nats-auth
  mountPath: /var/run/secrets/orrery/nats
  readOnly: true
{{- end }}
{{- if .Values.nats.tls.enabled }}
- name: nats-tls
  mountPath: /var/run/secrets/orrery/nats-tls
  readOnly: true
{{- end }}
{{- end }}

{{/* Only the role's own password is mounted: (dict "root" $ "role" "router"|"worker"). */}}
{{- define "orrery.natsAuthVolume" -}}
{{- if .root.Values.nats.auth.enabled }}
- name: nats-auth
  secret:
    secretName: {{ include "orrery.natsAuthSecretName" .root }}
    defaultMode: 288  # 0440: owner and group (fsGroup) may read
    items:
      - key: {{ .role }}-password
        path: password
{{- end }}
{{- if .root.Values.nats.tls.enabled }}
- name: nats-tls
  secret:
    secretName: {{ required "nats.tls.secretName is required with nats.tls.enabled (a Secret with ca.crt, and tls.crt/tls.key with clientCert)" .root.Values.nats.tls.secretName }}
    defaultMode: 288  # 0440
{{- end }}
{{- end }}

{{/*
The generated Secret's data: the passwords it already holds (`lookup`, so an upgrade keeps them;
empty under `helm template`), else new random 32-character ones.
*/}}
{{- define "orrery.natsAuthPasswords" -}}
{{- $live := lookup "v1" "Secret" .Release.Namespace (include "orrery.natsAuthSecretName" .) }}
{{- $data := default dict (and $live $live.data) }}
router-password: {{ default (randAlphaNum 32 | b64enc) (get $data "router-password") }}
worker-password: {{ default (randAlphaNum 32 | b64enc) (get $data "worker-password") }}
{{- end }}

{{/* A list of subjects as a nats-server config array of quoted strings (toJson would escape ">"). */}}
{{- define "orrery.natsList" -}}
[{{ range $i, $x := . }}{{ if $i }}, {{ end }}"{{ $x }}"{{ end }}]
{{- end }}
