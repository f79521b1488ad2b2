{{/* The release's object name prefix. */}}
{{- define "tenant-mcp.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "tenant-mcp.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: include with (list . "controller"). */}}
{{- define "tenant-mcp.selector" -}}
app.kubernetes.io/name: {{ (index . 0).Chart.Name }}
app.kubernetes.io/instance: {{ (index . 0).Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tenant-mcp.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The restricted Pod Security Standard, for every container. */}}
{{- define "tenant-mcp.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tenant-mcp.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- /* "true" when templates render against a cluster (helm install/upgrade, a server-side
       dry run), empty under helm template and GitOps renderers, where lookup returns nothing. */}}
{{- define "tenant-mcp.clusterReachable" -}}
{{- if (lookup "v1" "Namespace" "" "") -}}true{{- end -}}
{{- end -}}

{{- define "tenant-mcp.keysSecret" -}}
{{- .Values.encryptionKeys.existingSecret | default (printf "%s-keys" (include "tenant-mcp.fullname" .)) -}}
{{- end -}}

{{- define "tenant-mcp.controllerServiceAccount" -}}
{{- printf "%s-controller" (include "tenant-mcp.fullname" .) -}}
{{- end -}}

{{- define "tenant-mcp.mcpServerServiceAccount" -}}
{{- printf "%s-mcp-server" (include "tenant-mcp.fullname" .) -}}
{{- end -}}

{{/* Where the global servers' credentials live: a namespace of their own, never the release's
     (the control plane's keys, JWT secret and database URL live there, and client accounts
     must be able to read the global credentials without any of those). */}}
{{- define "tenant-mcp.credentialsNamespace" -}}
{{- $ns := .Values.globalConfig.credentialsNamespace | default "tenant-mcp-credentials" -}}
{{- if eq $ns .Release.Namespace -}}
{{- fail (printf "globalConfig.credentialsNamespace must not be the release namespace %q: it holds the mirror keys, the JWT signing secret and the database URL, which application pods must not read; keep the global credentials in a namespace of their own (default tenant-mcp-credentials)" .Release.Namespace) -}}
{{- end -}}
{{- $ns -}}
{{- end -}}

{{/* The names of the Secrets the global servers reference (globalConfig.servers), plus
     globalConfig.credentialSecretNames, as a JSON array: what client accounts may read. */}}
{{- define "tenant-mcp.globalSecretNames" -}}
{{- $names := list -}}
{{- $servers := .Values.globalConfig.servers | default dict -}}
{{- range $kind := list "postgres" "minio" -}}
{{- with (get $servers $kind) -}}
{{- with .credentialsSecretRef }}{{ $names = append $names .name }}{{ end -}}
{{- with .caCertSecretRef }}{{ $names = append $names .name }}{{ end -}}
{{- end -}}
{{- end -}}
{{- $mcp := list -}}
{{- with $servers.aiMcpServer }}{{ $mcp = append $mcp . }}{{ end -}}
{{- range ($servers.mcpServers | default list) }}{{ $mcp = append $mcp . }}{{ end -}}
{{- range $mcp -}}
{{- with .bearerTokenSecretRef }}{{ $names = append $names .name }}{{ end -}}
{{- range (.headers | default list) -}}
{{- with .valueFrom }}{{ $names = append $names .name }}{{ end -}}
{{- end -}}
{{- end -}}
{{- $names = concat $names (.Values.globalConfig.credentialSecretNames | default list) -}}
{{- $names | uniq | sortAlpha | toJson -}}
{{- end -}}

{{- define "tenant-mcp.webhookServiceAccount" -}}
{{- printf "%s-webhook" (include "tenant-mcp.fullname" .) -}}
{{- end -}}

{{/* The webhook's Service (the certificate names <service>.<namespace>.svc). */}}
{{- define "tenant-mcp.webhookService" -}}
{{- printf "%s-webhook" (include "tenant-mcp.fullname" .) -}}
{{- end -}}

{{/* The Secret with the webhook's serving certificate (made by the webhook, or by
     cert-manager). */}}
{{- define "tenant-mcp.webhookCertSecret" -}}
{{- printf "%s-webhook-tls" (include "tenant-mcp.fullname" .) -}}
{{- end -}}

{{/* Every subject the chart binds a role to — tenant admins, uber admins, the controller's,
     the management server's and the webhook's ServiceAccounts — as a JSON object
     {"users": [...], "groups": [...]} of the names the API server reports them by
     (ServiceAccounts as system:serviceaccount:<namespace>:<name>). The admission policies
     match requests by it. */}}
{{- define "tenant-mcp.boundSubjects" -}}
{{- $users := list -}}
{{- $groups := list -}}
{{- $subjects := list -}}
{{- range .Values.rbac.tenantAdmins -}}
{{- $ns := .namespace -}}
{{- range .subjects -}}
{{- $subjects = append $subjects (dict "kind" .kind "name" .name "namespace" (.namespace | default $ns)) -}}
{{- end -}}
{{- end -}}
{{- range .Values.rbac.uberAdmins -}}
{{- $subjects = append $subjects (dict "kind" .kind "name" .name "namespace" (.namespace | default "")) -}}
{{- end -}}
{{- range $subjects -}}
{{- if eq .kind "Group" -}}
{{- $groups = append $groups .name -}}
{{- else if eq .kind "ServiceAccount" -}}
{{- $users = append $users (printf "system:serviceaccount:%s:%s" .namespace .name) -}}
{{- else -}}
{{- $users = append $users .name -}}
{{- end -}}
{{- end -}}
{{- range $account := list (include "tenant-mcp.controllerServiceAccount" .) (include "tenant-mcp.mcpServerServiceAccount" .) (include "tenant-mcp.webhookServiceAccount" .) -}}
{{- $users = append $users (printf "system:serviceaccount:%s:%s" $.Release.Namespace $account) -}}
{{- end -}}
{{- dict "users" ($users | uniq | sortAlpha) "groups" ($groups | uniq | sortAlpha) | toJson -}}
{{- end -}}

{{/* A CEL list literal of `names` (a list of strings): ['a', 'b']. Names are Kubernetes
     names and group names; a quote in one would end the literal, so it is refused. */}}
{{- define "tenant-mcp.celList" -}}
{{- $quoted := list -}}
{{- range . -}}
{{- if or (contains "'" .) (contains "\\" .) -}}
{{- fail (printf "%q: a subject or account name with a quote or backslash cannot be matched by the chart's admission policies" .) -}}
{{- end -}}
{{- $quoted = append $quoted (printf "'%s'" .) -}}
{{- end -}}
[{{ join ", " $quoted }}]
{{- end -}}

{{/* The client accounts the controller grants each config's snapshots to
     (rbac.clientServiceAccounts without watchNamespace), as a JSON array of
     "namespace/name". */}}
{{- define "tenant-mcp.snapshotReaders" -}}
{{- $readers := list -}}
{{- range .Values.rbac.clientServiceAccounts -}}
{{- if not .watchNamespace -}}
{{- $readers = append $readers (printf "%s/%s" .namespace .name) -}}
{{- end -}}
{{- end -}}
{{- $readers | toJson -}}
{{- end -}}

{{/* The webhook entries' clientConfig: the webhook Service's /validate. */}}
{{- define "tenant-mcp.webhookClientConfig" }}
    clientConfig:
      service:
        name: {{ include "tenant-mcp.webhookService" . }}
        namespace: {{ .Release.Namespace }}
        path: /validate
        port: 443
      # caBundle: set by the webhook itself{{ if .Values.webhook.certificate.certManager.enabled }} (here: by cert-manager's cainjector){{ end }}.
{{- end }}

{{/* The logging and allocator settings every tenant-mcp container shares. */}}
{{- define "tenant-mcp.commonEnv" -}}
- name: TENANT_MCP_LOG
  value: {{ .Values.logLevel | quote }}
- name: TENANT_MCP_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- with .Values.malloc.arenaMax }}
- name: MALLOC_ARENA_MAX
  value: {{ . | quote }}
{{- end }}
{{- with .Values.malloc.mmapThreshold }}
- name: MALLOC_MMAP_THRESHOLD_
  value: {{ . | int64 | quote }}
{{- end }}
{{- end -}}
