{{/*
Expand the name of the chart.
*/}}
{{- define "scorer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Create a default fully qualified app name.
Truncated at 63 chars because some Kubernetes name fields are limited to this (by the DNS naming
spec). The CronJob name is further limited to 52 characters: see "scorer.validate".
If the release name contains the chart name it is used as the full name.
*/}}
{{- define "scorer.fullname" -}}
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
Create chart name and version as used by the chart label.
*/}}
{{- define "scorer.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Common labels.
*/}}
{{- define "scorer.labels" -}}
helm.sh/chart: {{ include "scorer.chart" . }}
{{ include "scorer.selectorLabels" . }}
{{- if .Chart.AppVersion }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Selector labels.
*/}}
{{- define "scorer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scorer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The model label: the registered model name made a valid label value (at most 63 characters of
[A-Za-z0-9-_.], starting and ending with an alphanumeric), so `kubectl get jobs,pods -l
scorer.dev/model=<name>` finds a model's runs.
*/}}
{{- define "scorer.modelLabelValue" -}}
{{- regexReplaceAll "[^A-Za-z0-9_.-]+" (toString .Values.model.name) "-" | trunc 63 | trimAll "-_." }}
{{- end }}

{{- define "scorer.modelLabels" -}}
scorer.dev/model: {{ include "scorer.modelLabelValue" . | quote }}
{{- end }}

{{/*
Name of the ServiceAccount to use.
*/}}
{{- define "scorer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scorer.fullname" .) .Values.serviceAccount.name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- default "default" .Values.serviceAccount.name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
The image reference (cert-manager style): repository, then "@digest" when a digest is set
(it wins over the tag), else ":tag" with the tag defaulting to the chart's appVersion.
*/}}
{{- define "scorer.image" -}}
{{- $image := .Values.image }}
{{- $image.repository }}
{{- if $image.digest }}
{{- printf "@%s" $image.digest }}
{{- else }}
{{- printf ":%s" (toString (default .Chart.AppVersion $image.tag)) }}
{{- end }}
{{- end }}

{{/*
Name of the Secret holding the database URL.
*/}}
{{- define "scorer.databaseSecretName" -}}
{{- if .Values.database.createSecret }}
{{- printf "%s-database" (include "scorer.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- .Values.database.existingSecret }}
{{- end }}
{{- end }}

{{/*
Where every pod finds the database's CA certificate when `database.tls.caSecret` is set.
*/}}
{{- define "scorer.databaseCaPath" -}}
/etc/scorer/tls/ca.crt
{{- end }}

{{/*
The volumes every pod the chart renders carries, and their mounts in its container (a list
each, for `volumes:` and `volumeMounts:`): a writable `/tmp` (the root filesystem is
read-only) and, with `database.tls.caSecret`, the database's CA read-only at
"scorer.databaseCaPath". A pod spec uses both:
  volumeMounts: {{ include "scorer.volumeMounts" . | nindent N }}
  volumes: {{ include "scorer.volumes" . | nindent N }}
*/}}
{{- define "scorer.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.database.tls.caSecret }}
- name: database-ca
  mountPath: {{ include "scorer.databaseCaPath" . | dir }}
  readOnly: true
{{- end }}
{{- end }}

{{- define "scorer.volumes" -}}
{{- $v := .Values -}}
- name: tmp
  {{- $emptyDir := dict }}
  {{- with $v.tmpVolume.medium }}{{ $_ := set $emptyDir "medium" . }}{{ end }}
  {{- with $v.tmpVolume.sizeLimit }}{{ $_ := set $emptyDir "sizeLimit" (toString .) }}{{ end }}
  emptyDir: {{- if $emptyDir }}{{ toYaml $emptyDir | nindent 4 }}{{ else }} {}{{ end }}
{{- with $v.database.tls.caSecret }}
- name: database-ca
  secret:
    secretName: {{ . | quote }}
    defaultMode: 0444
    items:
      - key: {{ $v.database.tls.caKey | quote }}
        path: {{ include "scorer.databaseCaPath" $ | base }}
{{- end }}
{{- end }}

{{/*
Prefix of the Job name used by the one-off run printed in NOTES.txt: Job names feed the
63-character `batch.kubernetes.io/job-name` label and "-manual-<10 digits>" takes 18.
*/}}
{{- define "scorer.manualJobPrefix" -}}
{{- include "scorer.fullname" . | trunc 45 | trimSuffix "-" }}
{{- end }}

{{/*
A scalar value as an environment variable string. Numbers from values files arrive as float64,
which would print as 1e+06: integers are printed as integers.
*/}}
{{- define "scorer.envValue" -}}
{{- $v := . }}
{{- if and (kindIs "float64" $v) (eq (float64 (int64 $v)) $v) }}
{{- int64 $v | toString }}
{{- else }}
{{- toString $v }}
{{- end }}
{{- end }}

{{/*
The model selector, for NOTES.txt: "alias=champion", "stage=Production" or "version=7".
*/}}
{{- define "scorer.modelSelector" -}}
{{- $m := .Values.model }}
{{- if $m.alias }}alias={{ $m.alias }}
{{- else if $m.stage }}stage={{ $m.stage }}
{{- else }}version={{ include "scorer.envValue" $m.version }}
{{- end }}
{{- end }}

{{/*
What values.schema.json cannot check, because it depends on the release: the name's length.
Every rule about the values themselves is in the schema (generated from values.yaml and
schema/rules.yaml); with `--skip-schema-validation` the scorer's own settings check still fails
a bad configuration with exit code 2, naming the variable.
*/}}
{{- define "scorer.validate" -}}
{{- if gt (len (include "scorer.fullname" .)) 52 }}
{{- fail (printf "the CronJob name %q is longer than 52 characters: set fullnameOverride" (include "scorer.fullname" .)) }}
{{- end }}
{{- if and (not (kindIs "invalid" .Values.parallelism)) (gt (int64 .Values.parallelism) (int64 .Values.shards)) }}
{{- fail (printf "parallelism (%v) must not exceed shards (%v)" .Values.parallelism .Values.shards) }}
{{- end }}
{{- end }}

{{/*
The Job spec the CronJob's jobTemplate and the backfill Job share: retries, deadlines,
podFailurePolicy and the pod template (env, security contexts, volumes, scheduling). Called
with a dict:
  root                   the chart's context
  args                   the container's args (empty: the image's default command, `run`)
  activeDeadlineSeconds  the Job's wall-clock limit in seconds (nil: unset)
  shards                 the run's shards (nil or 1: one pod; more: an Indexed Job, SCORER_SHARDS)
  env                    the container's own env, rendered (nil: "scorer.env", the run's)
  serviceAccountName     the pod's service account (nil: "scorer.serviceAccountName")
  component              the pods' app.kubernetes.io/component label (nil: none)
  database               the Job's own database Secret (existingSecret, urlKey; nil: the release's)
Every pod the chart renders that runs the scorer (scoring, prune, backfill, migrate) comes from
here, so a volume or mount every pod needs (a database CA, say) goes into this one place; the
`helm test` pod (tests/check-pod.yaml) is the only other.
*/}}
{{- define "scorer.jobSpec" -}}
{{- $root := .root }}
{{- $v := $root.Values -}}
{{- $shards := int64 (default 1 .shards) -}}
{{- if gt $shards 1 -}}
# One run over {{ $shards }} pods: pod i is shard i (JOB_COMPLETION_INDEX) of the run named after the Job.
completionMode: Indexed
completions: {{ $shards }}
parallelism: {{ int64 (default $shards $v.parallelism) }}
backoffLimitPerIndex: {{ int64 $v.backoffLimitPerIndex }}
maxFailedIndexes: 0
{{- else -}}
backoffLimit: {{ int64 $v.backoffLimit }}
{{- end }}
{{- if not (kindIs "invalid" .activeDeadlineSeconds) }}
activeDeadlineSeconds: {{ int64 .activeDeadlineSeconds }}
{{- end }}
{{- if not (kindIs "invalid" $v.ttlSecondsAfterFinished) }}
ttlSecondsAfterFinished: {{ int64 $v.ttlSecondsAfterFinished }}
{{- end }}
{{- with $v.podFailurePolicy }}
{{- if and .enabled (or .failJobOnExitCodes .ignoreDisruptions) }}
podFailurePolicy:
  rules:
    {{- with .failJobOnExitCodes }}
    # A failure no retry can cure (exit code 2): fail the Job now.
    - action: FailJob
      onExitCodes:
        containerName: scorer
        operator: In
        values:
          {{- range . }}
          - {{ int64 . }}
          {{- end }}
    {{- end }}
    {{- if .ignoreDisruptions }}
    # Eviction, preemption, node drain: retry without counting against backoffLimit.
    - action: Ignore
      onPodConditions:
        - type: DisruptionTarget
          status: "True"
    {{- end }}
{{- end }}
{{- end }}
template:
  metadata:
    labels:
      {{- include "scorer.labels" $root | nindent 6 }}
      {{- include "scorer.modelLabels" $root | nindent 6 }}
      {{- with .component }}
      app.kubernetes.io/component: {{ . }}
      {{- end }}
      {{- with $v.podLabels }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
    {{- with $v.podAnnotations }}
    annotations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  spec:
    # Required by podFailurePolicy; retries are new pods counted by backoffLimit.
    restartPolicy: Never
    serviceAccountName: {{ .serviceAccountName | default (include "scorer.serviceAccountName" $root) }}
    automountServiceAccountToken: {{ $v.serviceAccount.automountServiceAccountToken }}
    {{- with $v.priorityClassName }}
    priorityClassName: {{ . | quote }}
    {{- end }}
    {{- with $v.imagePullSecrets }}
    imagePullSecrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.podSecurityContext }}
    securityContext:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    containers:
      - name: scorer
        image: {{ include "scorer.image" $root | quote }}
        imagePullPolicy: {{ $v.image.pullPolicy }}
        {{- with .args }}
        args:
          {{- range . }}
          - {{ include "scorer.envValue" . | quote }}
          {{- end }}
        {{- end }}
        env:
          {{- .env | default (include "scorer.env" (dict "root" $root "database" .database)) | nindent 10 }}
          {{- if gt $shards 1 }}
          - name: SCORER_SHARDS
            value: {{ $shards | quote }}
          {{- if dig "requests" "cpu" "" ($v.resources | default dict) }}
          # Predict threads: the CPUs this pod requested, rounded up. The scheduler packs shard
          # pods by their requests; each sizing its pool to the node's CPUs oversubscribes it.
          - name: SCORER_PREDICT_THREADS
            valueFrom:
              resourceFieldRef:
                containerName: scorer
                resource: requests.cpu
                divisor: "1"
          {{- end }}
          {{- end }}
          {{- with $v.env }}
          {{- toYaml . | nindent 10 }}
          {{- end }}
        {{- with $v.envFrom }}
        envFrom:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $v.securityContext }}
        securityContext:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        {{- with $v.resources }}
        resources:
          {{- toYaml . | nindent 10 }}
        {{- end }}
        volumeMounts:
          {{- include "scorer.volumeMounts" $root | nindent 10 }}
    volumes:
      {{- include "scorer.volumes" $root | nindent 6 }}
    {{- with $v.nodeSelector }}
    nodeSelector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.affinity }}
    affinity:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with $v.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
{{- end }}

{{/*
The backfill's arguments, as JSON: ["backfill", "--from", X, "--to", Y], or
["backfill", "--snapshots", "A,B,C"] when backfill.snapshots is set.
*/}}
{{- define "scorer.backfillArgs" -}}
{{- $b := .Values.backfill }}
{{- if $b.snapshots }}
{{- $snapshots := list }}
{{- range $b.snapshots }}{{ $snapshots = append $snapshots (include "scorer.envValue" .) }}{{ end }}
{{- list "backfill" "--snapshots" (join "," $snapshots) | toJson }}
{{- else }}
{{- list "backfill" "--from" (include "scorer.envValue" $b.from) "--to" (include "scorer.envValue" $b.to) | toJson }}
{{- end }}
{{- end }}

{{/*
The backfill Job's name: "<fullname>-backfill-<8 hex digits of a hash of its arguments>". A
Job's pod template is immutable, so another range is another Job (helm replaces the old one)
rather than a failed upgrade. The full name is cut to 44 characters so that the name fits the
63-character `batch.kubernetes.io/job-name` label.
*/}}
{{- define "scorer.backfillJobName" -}}
{{- printf "%s-backfill-%s" (include "scorer.fullname" . | trunc 44 | trimSuffix "-") (include "scorer.backfillArgs" . | sha256sum | trunc 8) }}
{{- end }}

{{/*
The migration Job's Secret: migrate.database.existingSecret when set; else, when the chart makes
the development Secret and the Job is a hook, the hook copy of it (templates/migrate-hook.yaml:
a pre-install hook runs before the release's own Secret exists); else the runtime Secret.
*/}}
{{- define "scorer.migrateSecretName" -}}
{{- $m := .Values.migrate }}
{{- if $m.database.existingSecret }}
{{- $m.database.existingSecret }}
{{- else if and .Values.database.createSecret $m.useHelmHooks }}
{{- include "scorer.migrateHookName" . }}
{{- else }}
{{- include "scorer.databaseSecretName" . }}
{{- end }}
{{- end }}

{{/*
The key of the URL in the migration Job's Secret.
*/}}
{{- define "scorer.migrateUrlKey" -}}
{{- if .Values.migrate.database.existingSecret }}
{{- .Values.migrate.database.urlKey }}
{{- else }}
{{- .Values.database.urlKey }}
{{- end }}
{{- end }}

{{/*
The name of the migration hook Job and of the objects it needs before the release's own exist
(the development Secret, the ServiceAccount, the NetworkPolicy): "<fullname>-migrate".
*/}}
{{- define "scorer.migrateHookName" -}}
{{- printf "%s-migrate" (include "scorer.fullname" .) }}
{{- end }}

{{/*
The migration Job's spec: the CronJob's pod running `migrate`, with the migration's own
environment and (as a hook) the hook's ServiceAccount when the chart makes one.
*/}}
{{- define "scorer.migrateJobSpec" -}}
{{- $m := .Values.migrate }}
{{- $account := and $m.useHelmHooks .Values.serviceAccount.create (include "scorer.migrateHookName" .) }}
{{- $args := list "migrate" }}
{{- with $m.grant }}
{{- if and .runtimeRole .readerRole }}
{{- $args = list "migrate" "--grant-runtime" .runtimeRole "--grant-reader" .readerRole }}
{{- else if or .runtimeRole .readerRole }}
{{- fail "migrate.grant needs both runtimeRole and readerRole, or neither" }}
{{- end }}
{{- end }}
{{- include "scorer.jobSpec" (dict "root" . "args" $args "activeDeadlineSeconds" $m.activeDeadlineSeconds "env" (include "scorer.migrateEnv" .) "serviceAccountName" $account "component" "migrate") }}
{{- end }}

{{/*
The migration Job's name: "<fullname>-migrate" as a hook (replaced at each upgrade); as a plain
Job "<fullname>-migrate-<8 hex digits>", a hash of the chart version and the Job's whole spec,
so that any change is another Job (a Job's pod template is immutable), with the full name cut
to 44 characters so that the name fits the 63-character `batch.kubernetes.io/job-name` label.
*/}}
{{- define "scorer.migrateJobName" -}}
{{- if .Values.migrate.useHelmHooks }}
{{- include "scorer.migrateHookName" . }}
{{- else }}
{{- $hash := printf "%s\n%s" .Chart.Version (include "scorer.migrateJobSpec" .) | sha256sum | trunc 8 }}
{{- printf "%s-migrate-%s" (include "scorer.fullname" . | trunc 44 | trimSuffix "-") $hash }}
{{- end }}
{{- end }}

{{/*
The migration Job's environment: the database URL of its role, its TLS settings, the target
schema and logging; `python -m scorer migrate` reads nothing else.
*/}}
{{- define "scorer.migrateEnv" -}}
{{- $v := .Values -}}
- name: SCORER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "scorer.migrateSecretName" . | quote }}
      key: {{ include "scorer.migrateUrlKey" . | quote }}
{{- include "scorer.tlsEnv" . }}
{{- range $pair := list (list "SCORER_TARGET_SCHEMA" $v.scoring.targetSchema) (list "SCORER_LOG_FORMAT" $v.log.format) (list "SCORER_LOG_LEVEL" $v.log.level) }}
{{- with index $pair 1 }}
- name: {{ index $pair 0 }}
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The hook annotations of the migration Job (weight 0) and of what it needs first (weight -5).
before-hook-creation,hook-succeeded: a failed Job stays for its logs, and the next upgrade
replaces it.
*/}}
{{- define "scorer.migrateHookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: {{ .weight | quote }}
helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
{{- end }}

{{/*
The NetworkPolicy's spec (templates/networkpolicy.yaml, and the migration hook's copy).
*/}}
{{- define "scorer.networkPolicySpec" -}}
# Every pod of the release: scoring, prune, backfill, migrate and the helm test.
podSelector:
  matchLabels:
    {{- include "scorer.selectorLabels" . | nindent 4 }}
policyTypes:
  - Ingress
  - Egress
# No ingress rule: nothing connects to a batch job.
egress:
  {{- $rules := list "database" "mlflow" "dns" }}
  {{- if $.Values.metrics.pushgateway.url }}
  {{- $rules = append $rules "pushgateway" }}
  {{- end }}
  {{- range $name := $rules }}
  {{- $rule := index $.Values.networkPolicy $name }}
  # {{ $name }}
  - ports:
      {{- toYaml $rule.ports | nindent 6 }}
    {{- with $rule.to }}
    to:
      {{- toYaml . | nindent 6 }}
    {{- end }}
  {{- end }}
  {{- with .Values.networkPolicy.extraEgress }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
