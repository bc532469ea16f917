{{/*
The container's environment: the contract with the scorer (docs/configuration.md lists
every variable). Optional SCORER_* variables are only set when their value is set, so the scorer's
own defaults apply. Takes a dict:
  root      the chart's root context
  database  a Job's own database Secret (existingSecret, urlKey; empty: the release's)
*/}}
{{- define "scorer.env" -}}
{{- $root := .root }}
{{- $v := $root.Values }}
{{- $own := .database | default dict }}
{{- $optional := list
  (list "SCORER_MODEL_ALIAS" $v.model.alias)
  (list "SCORER_MODEL_STAGE" $v.model.stage)
  (list "SCORER_MODEL_VERSION" $v.model.version)
  (list "SCORER_REQUIRE_ALIAS" $v.model.requireAlias)
  (list "SCORER_REQUIRE_STAGE" $v.model.requireStage)
  (list "SCORER_SHADOW_ALIAS" $v.model.shadow.alias)
  (list "SCORER_SHADOW_VERSION" $v.model.shadow.version)
  (list "SCORER_SCORE_KIND" $v.model.scoreKind)
  (list "SCORER_POSITIVE_CLASS" $v.model.positiveClass)
  (list "SCORER_SNAPSHOT_COLUMN" $v.features.snapshotColumn)
  (list "SCORER_SNAPSHOT" $v.features.snapshot)
  (list "SCORER_MAX_SNAPSHOT_AGE" $v.features.maxSnapshotAge)
  (list "SCORER_THRESHOLD" $v.scoring.threshold)
  (list "SCORER_CHUNK_ROWS" $v.scoring.chunkRows)
  (list "SCORER_MAX_REJECTED_RATIO" $v.scoring.maxRejectedRatio)
  (list "SCORER_REASONS" $v.scoring.reasons)
  (list "SCORER_REASONS_METHOD" $v.scoring.reasonsMethod)
  (list "SCORER_TARGET_SCHEMA" $v.scoring.targetSchema)
  (list "SCORER_KEEP_RUNS" $v.retention.keepRuns)
  (list "SCORER_KEEP_DAYS" $v.retention.keepDays)
  (list "SCORER_OUTCOMES_TABLE" (ternary $v.evaluation.outcomesTable "" (eq $v.evaluation.enabled true)))
  (list "SCORER_OUTCOME_HORIZON_DAYS" (ternary $v.evaluation.horizonDays "" (eq $v.evaluation.enabled true)))
  (list "SCORER_MAX_SCORE_PSI" $v.quality.maxScorePsi)
  (list "SCORER_MIN_ROWS_RATIO" $v.quality.minRowsRatio)
  (list "SCORER_MAX_NULL_SHARE_INCREASE" $v.quality.maxNullShareIncrease)
  (list "SCORER_MAX_FEATURE_PSI" $v.quality.maxFeaturePsi)
  (list "SCORER_QUALITY_OVERRIDE" $v.quality.override)
  (list "SCORER_SHARD_TIMEOUT_SECONDS" $v.shardTimeoutSeconds)
  (list "SCORER_LOG_FORMAT" $v.log.format)
  (list "SCORER_LOG_LEVEL" $v.log.level)
  (list "SCORER_MLFLOW_RECORD" $v.mlflow.recordRuns)
  (list "SCORER_MLFLOW_EXPERIMENT" $v.mlflow.experiment)
  (list "OPENLINEAGE_URL" $v.openlineage.url)
  (list "OPENLINEAGE_ENDPOINT" $v.openlineage.endpoint)
  (list "OPENLINEAGE_NAMESPACE" $v.openlineage.namespace)
  (list "SCORER_PUSHGATEWAY_URL" $v.metrics.pushgateway.url)
  (list "SCORER_PUSHGATEWAY_TIMEOUT_SECONDS" $v.metrics.pushgateway.timeoutSeconds)
-}}
- name: MLFLOW_TRACKING_URI
  value: {{ $v.mlflow.trackingUri | quote }}
{{- with $v.mlflow.existingSecret }}
{{- $secret := . }}
{{- range $name, $key := dict "MLFLOW_TRACKING_USERNAME" $v.mlflow.usernameKey "MLFLOW_TRACKING_PASSWORD" $v.mlflow.passwordKey "MLFLOW_TRACKING_TOKEN" $v.mlflow.tokenKey }}
{{- if $key }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ $key | quote }}
      optional: true
{{- end }}
{{- end }}
{{- end }}
{{- with $v.openlineage.existingSecret }}
{{- $secret := . }}
{{- with $v.openlineage.urlKey }}
- name: OPENLINEAGE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ . | quote }}
{{- end }}
{{- with $v.openlineage.apiKeyKey }}
- name: OPENLINEAGE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret | quote }}
      key: {{ . | quote }}
      optional: true
{{- end }}
{{- end }}
- name: SCORER_MODEL_NAME
  value: {{ $v.model.name | quote }}
- name: SCORER_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ default (include "scorer.databaseSecretName" $root) $own.existingSecret | quote }}
      key: {{ default $v.database.urlKey $own.urlKey | quote }}
{{- include "scorer.tlsEnv" $root }}
- name: SCORER_FEATURES_TABLE
  value: {{ $v.features.table | quote }}
- name: SCORER_ENTITY_COLUMN
  value: {{ $v.features.entityColumn | quote }}
{{- range $pair := $optional }}
{{- $value := index $pair 1 }}
{{- if not (eq (toString $value) "" "<nil>") }}
- name: {{ index $pair 0 }}
  value: {{ include "scorer.envValue" $value | quote }}
{{- end }}
{{- end }}
# Lineage: which Job, pod, node and image produced the run
- name: SCORER_RUN_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['batch.kubernetes.io/job-name']
- name: SCORER_K8S_JOB
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['batch.kubernetes.io/job-name']
- name: SCORER_K8S_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: SCORER_K8S_POD
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: SCORER_K8S_NODE
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: SCORER_K8S_CRONJOB
  value: {{ include "scorer.fullname" $root | quote }}
- name: SCORER_IMAGE
  value: {{ include "scorer.image" $root | quote }}
# The release: a label of the pushed metrics (the alerts select on it)
- name: SCORER_RELEASE
  value: {{ $root.Release.Name | quote }}
{{- end }}

{{/*
TLS: verify the server against the CA that "scorer.volumes" mounts (the URL's own sslmode and
sslrootcert win over these). In every pod that connects to the database.
*/}}
{{- define "scorer.tlsEnv" -}}
{{- if .Values.database.tls.caSecret }}
- name: PGSSLROOTCERT
  value: {{ include "scorer.databaseCaPath" . | quote }}
- name: PGSSLMODE
  value: {{ .Values.database.tls.sslmode | quote }}
{{- end }}
{{- end }}

{{/*
What `scorer evaluate` reads besides "scorer.env" (which carries the outcome table and the
horizon whenever evaluation is on, so that prune keeps the runs not evaluated yet).
*/}}
{{- define "scorer.evaluationEnv" -}}
{{- $e := .Values.evaluation }}
- name: SCORER_OUTCOME_ENTITY_COLUMN
  value: {{ $e.entityColumn | quote }}
- name: SCORER_OUTCOME_COLUMN
  value: {{ $e.outcomeColumn | quote }}
- name: SCORER_OUTCOME_TIME_COLUMN
  value: {{ $e.timeColumn | quote }}
{{- if not (kindIs "invalid" $e.minRealizedAuc) }}
- name: SCORER_MIN_REALIZED_AUC
  value: {{ include "scorer.envValue" $e.minRealizedAuc | quote }}
{{- end }}
{{- if not (kindIs "invalid" $e.topShare) }}
- name: SCORER_COMPARE_TOP_SHARE
  value: {{ include "scorer.envValue" $e.topShare | quote }}
{{- end }}
{{- end }}
