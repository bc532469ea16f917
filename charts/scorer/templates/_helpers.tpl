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
  database               the Job's own database Secret (existingSecret, urlKey; nil: the release's)
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
    serviceAccountName: {{ include "scorer.serviceAccountName" $root }}
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
          {{- include "scorer.env" (dict "root" $root "database" .database) | nindent 10 }}
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
          - name: tmp
            mountPath: /tmp
    volumes:
      - name: tmp
        {{- $emptyDir := dict }}
        {{- with $v.tmpVolume.medium }}{{ $_ := set $emptyDir "medium" . }}{{ end }}
        {{- with $v.tmpVolume.sizeLimit }}{{ $_ := set $emptyDir "sizeLimit" (toString .) }}{{ end }}
        emptyDir: {{- if $emptyDir }}{{ toYaml $emptyDir | nindent 10 }}{{ else }} {}{{ end }}
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
