{{/*
The engine container and pod pieces, shared by the single-pod Deployment (engines.yaml) and the
multi-node groups (engines-multinode.yaml: LeaderWorkerSet leader/worker, RayCluster head/worker).
Every helper takes (dict "root" $ "model" $m "role" ROLE) where ROLE is:
  single  one pod is the whole engine (Deployment)
  leader  the pod that runs `vllm serve`'s API server in a multi-node group (discovery finds it)
  worker  a pod that lends its GPUs to the leader's engine (Ray worker, or vLLM --headless)
*/}}

{{/* multi-node settings of a model, defaults filled in */}}
{{- define "switchyard.multiNode" -}}
{{- $mn := default dict .model.multiNode -}}
{{- toJson (dict "enabled" (default false $mn.enabled) "kind" (default "leaderWorkerSet" $mn.kind) "nodes" (int (default 2 $mn.nodes)) "backend" (default "ray" $mn.backend) "rayPort" (int (default 6379 $mn.rayPort)) "pdbMaxUnavailable" (default 1 (dig "podDisruptionBudget" "maxUnavailable" 1 $mn)) "pdbEnabled" (dig "podDisruptionBudget" "enabled" true $mn)) -}}
{{- end -}}

{{/*
LMCache's layout, from root: "mp" (LMCache's multiprocess server on each node, lmcache-mp.yaml;
vLLM >= 0.32 maps --kv-offloading-backend lmcache to its LMCacheMPConnector), "connector"
(LMCacheConnectorV1 inside each engine, the cache server its lm:// remote), "" without LMCache.
Simulated engines model the connector layout only: auto is connector for them.
*/}}
{{- define "switchyard.lmcacheLayout" -}}
{{- $e := .Values.engines -}}
{{- if eq $e.offload.mode "lmcache" -}}
{{- $l := default "auto" $e.offload.lmcache.layout -}}
{{- if and (eq $l "auto") (eq $e.mode "sim") -}}
connector
{{- else if eq $l "auto" -}}
{{- $v := regexFind "^[0-9]+\\.[0-9]+(\\.[0-9]+)?" (trimPrefix "v" (toString $e.vllmImage.tag)) -}}
{{- if and $v (semverCompare ">=0.32.0-0" $v) -}}mp{{- else -}}connector{{- end -}}
{{- else -}}
{{- $l -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The shared tier (L2) behind LMCache's MP servers, from root: engines.offload.l2.type in the mp layout
(cache-server, external, cluster or none; cache-server is none where the cache server is off), ""
in any other layout.
*/}}
{{- define "switchyard.lmcacheL2" -}}
{{- if eq (include "switchyard.lmcacheLayout" .) "mp" -}}
{{- $t := .Values.engines.offload.l2.type -}}
{{- if and (eq $t "cache-server") (not .Values.cacheServer.enabled) -}}none{{- else -}}{{ $t }}{{- end -}}
{{- end -}}
{{- end -}}
{{- define "switchyard.kvClusterName" -}}{{ include "switchyard.fullname" . }}-kv-cluster{{- end -}}

{{- define "switchyard.lmcacheMpName" -}}{{ include "switchyard.fullname" . }}-lmcache{{- end -}}

{{/* GPUs per pod: TP × PP for a single pod; TP × PP ÷ nodes for each pod of a group (whole GPUs only) */}}
{{- define "switchyard.engineGpus" -}}
{{- $m := .model -}}
{{- $total := mul (int $m.tensorParallelSize) (int (default 1 $m.pipelineParallelSize)) -}}
{{- $mn := include "switchyard.multiNode" . | fromJson -}}
{{- if $mn.enabled -}}
{{- $nodes := int $mn.nodes -}}
{{- if ne (mod $total $nodes) 0 -}}
{{- fail (printf "engines.models[%s]: tensorParallelSize × pipelineParallelSize (%d) must divide evenly over multiNode.nodes (%d)" $m.name $total $nodes) -}}
{{- end -}}
{{- div $total $nodes -}}
{{- else -}}
{{- $total -}}
{{- end -}}
{{- end -}}

{{/* vLLM's --kv-events-config JSON: a PUB socket bound on every interface, or (collector mode) one
that connects to the router's collector socket, its topic naming the engine as discovery knows it */}}
{{- define "switchyard.engineKvEventsConfig" -}}
{{- $k := .root.Values.engines.kvEvents -}}
{{- $served := default .model.model .model.servedModelName -}}
{{- $endpoint := printf "tcp://*:%d" (int $k.port) -}}
{{- $topic := $k.topic -}}
{{- if $k.collector.enabled -}}
{{- $endpoint = printf "tcp://%s:%d" (include "switchyard.routerName" .root) (int $k.collector.port) -}}
{{- $topic = printf "kv@$(POD_IP):%d@%s" (int .root.Values.engines.port) $served -}}
{{- end -}}
{{- dict "enable_kv_cache_events" true "publisher" "zmq" "endpoint" $endpoint "replay_endpoint" nil "topic" $topic "buffer_steps" (int $k.bufferSteps) "hwm" (int $k.hwm) "max_queue_size" (int $k.maxQueueSize) | toJson -}}
{{- end -}}

{{/* the flags after the command: vLLM's (or the sim's) view of the model, then the role's own */}}
{{- define "switchyard.engineArgs" -}}
{{- $e := .root.Values.engines -}}
{{- $m := .model -}}
{{- $sim := eq $e.mode "sim" -}}
{{- $served := default $m.model $m.servedModelName -}}
{{- $mn := include "switchyard.multiNode" . | fromJson -}}
{{- $pp := int (default 1 $m.pipelineParallelSize) -}}
{{- if $sim }}
- sim
- {{ $m.model | quote }}
- --gpu={{ $m.sim.gpu }}
- --time-scale={{ $m.sim.timeScale }}
{{- else }}
- {{ $m.model | quote }}
- --dtype={{ $m.dtype }}
- --{{ ternary "" "no-" $m.enableChunkedPrefill }}enable-chunked-prefill
{{- end }}
- --served-model-name={{ $served }}
- --host=0.0.0.0
- --port={{ $e.port }}
- --max-model-len={{ int $m.maxModelLen }}
- --tensor-parallel-size={{ int $m.tensorParallelSize }}
{{- if gt $pp 1 }}
- --pipeline-parallel-size={{ $pp }}
{{- end }}
- --gpu-memory-utilization={{ $m.gpuMemoryUtilization }}
- --max-num-seqs={{ int $m.maxNumSeqs }}
- --{{ ternary "" "no-" $m.enablePrefixCaching }}enable-prefix-caching
# sha256_cbor with a fixed PYTHONHASHSEED: block hashes the router can reproduce
- --prefix-caching-hash-algo={{ $e.prefixCachingHashAlgo }}
{{- if and $e.kvEvents.enabled (ne .role "worker") }}
- {{ printf "--kv-events-config=%s" (include "switchyard.engineKvEventsConfig" .) | quote }}
{{- end }}
{{- if $e.lora.enabled }}
- --enable-lora
- --max-loras={{ int $e.lora.maxLoras }}
- --max-cpu-loras={{ int $e.lora.maxCpuLoras }}
- --max-lora-rank={{ int $e.lora.maxLoraRank }}
{{- end }}
{{- if eq $e.offload.mode "native" }}
- --kv-offloading-size={{ $e.offload.native.sizeGiB }}
- --kv-offloading-backend=native
{{- else if eq (include "switchyard.lmcacheLayout" .root) "mp" }}
# LMCache's multiprocess server on this node (its Service keeps traffic on the node); the size only
# turns offload on: the capacity is the server's L1
- --kv-offloading-backend=lmcache
- --kv-offloading-size={{ $e.offload.lmcache.mp.l1SizeGB }}
- {{ printf "--kv-transfer-config=%s" (dict "kv_connector_extra_config" (dict "lmcache.mp.host" (printf "tcp://%s" (include "switchyard.lmcacheMpName" .root)) "lmcache.mp.port" (int $e.offload.lmcache.mp.port)) | toJson) | quote }}
{{- else if eq $e.offload.mode "lmcache" }}
- '--kv-transfer-config={"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}'
{{- if eq $e.mode "sim" }}
# the link a simulated engine loads from the cache server at, GB/s: the one the router prices loads by
- --lmcache-remote-bandwidth={{ divf .root.Values.cacheServer.bandwidthGbps 8 }}
{{- end }}
{{- end }}
{{- /* disaggregated prefill/decode (docs/disaggregated.md): NixlConnector, producer or consumer */}}
{{- $pd := or (eq $m.role "prefill") (eq $m.role "decode") }}
{{- if and $pd (ne .role "worker") }}
{{- if ne $e.offload.mode "none" }}
{{- fail (printf "engines.models[%s]: role %s runs NixlConnector, and an engine has one KV connector: set engines.offload.mode to none" $m.name $m.role) }}
{{- end }}
- {{ printf "--kv-transfer-config=%s" (dict "kv_connector" "NixlConnector" "kv_role" (ternary "kv_producer" "kv_consumer" (eq $m.role "prefill")) | toJson) | quote }}
{{- end }}
{{- if $mn.enabled }}
{{- if eq $mn.backend "ray" }}
- --distributed-executor-backend=ray
{{- else }}
# vLLM's multiprocessing executor across the group's pods; LeaderWorkerSet names the leader and ranks
- --distributed-executor-backend=mp
- --nnodes=$(LWS_GROUP_SIZE)
- --master-addr=$(LWS_LEADER_ADDRESS)
{{- if eq .role "worker" }}
- --node-rank=$(LWS_WORKER_INDEX)
- --headless
{{- else }}
- --node-rank=0
{{- end }}
{{- end }}
{{- end }}
{{- range $m.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Ray inside a group: the leader starts the head, waits for every node, then `vllm serve` (as "$@") */}}
{{- define "switchyard.rayLeaderScript" -}}
{{- $mn := include "switchyard.multiNode" . | fromJson -}}
{{- if eq $mn.kind "rayCluster" -}}
# KubeRay's own `ray start` (ray.io/overwrite-container-cmd), in the background
eval "$KUBERAY_GEN_RAY_START_CMD" &
{{- else -}}
ray start --head --port={{ $mn.rayPort }} --dashboard-host=0.0.0.0 --num-gpus={{ include "switchyard.engineGpus" . }} --block &
{{- end }}
python3 - <<'EOF'
import time, ray
while True:
    try:
        ray.init(address="auto", logging_level="ERROR")
        break
    except Exception:
        time.sleep(2)
# every node of the group has joined: vLLM places its TP x PP workers over all of them
while sum(1 for n in ray.nodes() if n["Alive"]) < {{ $mn.nodes }}:
    time.sleep(2)
ray.shutdown()
EOF
exec "$@"
{{- end -}}

{{/* A Ray worker of a LeaderWorkerSet group: wait for the leader's head, then join it */}}
{{- define "switchyard.rayWorkerScript" -}}
{{- $mn := include "switchyard.multiNode" . | fromJson -}}
{{- if eq $mn.kind "rayCluster" -}}
ulimit -n 65536 || true
eval "$KUBERAY_GEN_RAY_START_CMD"
{{- else -}}
until ray health-check --address=$(LWS_LEADER_ADDRESS):{{ $mn.rayPort }} >/dev/null 2>&1; do sleep 5; done
exec ray start --address=$(LWS_LEADER_ADDRESS):{{ $mn.rayPort }} --num-gpus={{ include "switchyard.engineGpus" . }} --block
{{- end -}}
{{- end -}}

{{/* The engine container (name, image, command, args, env, ports, probes, drain, resources, mounts). */}}
{{- define "switchyard.engineContainer" -}}
{{- $root := .root -}}
{{- $e := $root.Values.engines -}}
{{- $m := .model -}}
{{- $sim := eq $e.mode "sim" -}}
{{- $mn := include "switchyard.multiNode" . | fromJson -}}
{{- $worker := eq .role "worker" -}}
{{- $serves := not $worker -}}
- name: engine
  {{- if $sim }}
  image: {{ include "switchyard.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  {{- else }}
  image: {{ printf "%s:%s" $e.vllmImage.repository $e.vllmImage.tag }}
  imagePullPolicy: {{ $e.vllmImage.pullPolicy }}
  {{- end }}
  {{- if and $worker (eq $mn.backend "ray") }}
  command:
    - /bin/bash
    - -c
    - {{ include "switchyard.rayWorkerScript" . | quote }}
  {{- else }}
  {{- if and (eq .role "leader") (eq $mn.backend "ray") }}
  command:
    - /bin/bash
    - -c
    - {{ include "switchyard.rayLeaderScript" . | quote }}
    - engine
    - vllm
    - serve
  {{- else if not $sim }}
  command: ["vllm", "serve"]
  {{- end }}
  args:
    {{- include "switchyard.engineArgs" . | trim | nindent 4 }}
  {{- end }}
  env:
    - name: PYTHONHASHSEED
      value: {{ $e.pythonHashSeed | quote }}
    {{- if and $e.lora.enabled $e.lora.runtimeUpdating }}
    # the router loads adapters through /v1/load_lora_adapter (the NetworkPolicy admits only the router)
    - name: VLLM_ALLOW_RUNTIME_LORA_UPDATING
      value: "True"
    {{- end }}
    {{- $pdRole := and (or (eq .model.role "prefill") (eq .model.role "decode")) (ne .role "worker") }}
    {{- if or (and $e.kvEvents.enabled $e.kvEvents.collector.enabled) $pdRole }}
    # collector mode: the KV-event topic names the engine by its pod IP, as discovery does; P/D: the
    # address NixlConnector gives decode engines to read this engine's KV from
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    {{- end }}
    {{- if $pdRole }}
    - name: VLLM_NIXL_SIDE_CHANNEL_HOST
      value: $(POD_IP)
    {{- end }}
    {{- if not $sim }}
    # a read-only root: every cache vLLM, torch, triton and Hugging Face write goes to volumes
    - name: HOME
      value: /tmp
    - name: HF_HOME
      value: /models/huggingface
    - name: XDG_CACHE_HOME
      value: /cache
    - name: VLLM_CACHE_ROOT
      value: /cache/vllm
    - name: TRITON_CACHE_DIR
      value: /cache/triton
    - name: TORCHINDUCTOR_CACHE_DIR
      value: /cache/torchinductor
    {{- if $e.hfTokenSecret.name }}
    - name: HF_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ $e.hfTokenSecret.name }}
          key: {{ $e.hfTokenSecret.key }}
    {{- end }}
    {{- end }}
    {{- if $root.Values.router.engineApiKeySecret.name }}
    - name: VLLM_API_KEY
      valueFrom:
        secretKeyRef:
          name: {{ $root.Values.router.engineApiKeySecret.name }}
          key: {{ $root.Values.router.engineApiKeySecret.key }}
    {{- end }}
    {{- if eq (include "switchyard.lmcacheLayout" $root) "connector" }}
    {{- $l := $e.offload.lmcache }}
    - name: LMCACHE_CHUNK_SIZE
      value: {{ $l.chunkSize | quote }}
    - name: LMCACHE_LOCAL_CPU
      value: {{ ternary "True" "False" $l.localCpu | quote }}
    - name: LMCACHE_MAX_LOCAL_CPU_SIZE
      value: {{ $l.maxLocalCpuSizeGB | quote }}
    - name: LMCACHE_REMOTE_URL
      value: {{ printf "lm://%s:%d" (include "switchyard.cacheServerName" $root) (int $root.Values.cacheServer.port) | quote }}
    - name: LMCACHE_REMOTE_SERDE
      value: {{ $l.remoteSerde | quote }}
    {{- if include "switchyard.cacheServerEvents" $root }}
    # chunk hashes the router can compute from the prompt (with PYTHONHASHSEED above) to match the
    # cache server's KV events; LMCache's default, Python's hash(), only Python can compute
    - name: LMCACHE_PRE_CACHING_HASH_ALGORITHM
      value: sha256_cbor
    {{- end }}
    {{- end }}
    {{- with $e.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- if $serves }}
  ports:
    - name: http
      containerPort: {{ $e.port }}
      protocol: TCP
    {{- if and $e.kvEvents.enabled (not $e.kvEvents.collector.enabled) }}
    - name: kv-events
      containerPort: {{ $e.kvEvents.port }}
      protocol: TCP
    {{- end }}
  startupProbe:
    httpGet: {path: /health, port: http}
    periodSeconds: {{ $e.startupProbe.periodSeconds }}
    failureThreshold: {{ $e.startupProbe.failureThreshold }}
  livenessProbe:
    httpGet: {path: /health, port: http}
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  readinessProbe:
    httpGet: {path: /health, port: http}
    periodSeconds: 5
    timeoutSeconds: 3
    failureThreshold: 2
  lifecycle:
    preStop:
      exec:
        # drain: the router drops a terminating pod at once and moves the streams it still serves
        # router.engineDrainSeconds later (docs/kubernetes.md); wait until the engine is idle
        command:
          {{- if $sim }}
          - node
          - -e
          - {{ include "switchyard.drainNode" $root | quote }}
          {{- else }}
          - python3
          - -c
          - {{ include "switchyard.drainPython" $root | quote }}
          {{- end }}
  {{- else if eq $mn.backend "ray" }}
  # a Ray worker: alive while its raylet answers Ray's dashboard agent health endpoint
  ports:
    - name: ray-agent
      containerPort: 52365
      protocol: TCP
  startupProbe:
    httpGet: {path: /api/local_raylet_healthz, port: ray-agent}
    periodSeconds: {{ $e.startupProbe.periodSeconds }}
    failureThreshold: {{ $e.startupProbe.failureThreshold }}
  livenessProbe:
    httpGet: {path: /api/local_raylet_healthz, port: ray-agent}
    periodSeconds: 10
    timeoutSeconds: 5
    failureThreshold: 3
  {{- end }}
  resources:
    {{- if $sim }}
    {{- toYaml $e.simResources | nindent 4 }}
    {{- else }}
    {{- $gpus := include "switchyard.engineGpus" . }}
    requests:
      {{- range $k, $v := $m.resources.requests }}
      {{ $k }}: {{ $v | quote }}
      {{- end }}
      nvidia.com/gpu: {{ $gpus }}
    limits:
      {{- range $k, $v := $m.resources.limits }}
      {{ $k }}: {{ $v | quote }}
      {{- end }}
      nvidia.com/gpu: {{ $gpus }}
    {{- end }}
  securityContext:
    {{- toYaml $root.Values.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: tmp
      mountPath: /tmp
    {{- if and $e.lora.enabled $e.lora.volume }}
    - name: lora-adapters
      mountPath: {{ $e.lora.mountPath }}
      readOnly: true
    {{- end }}
    {{- if not $sim }}
    - name: dshm
      mountPath: /dev/shm
    - name: model-cache
      mountPath: /models
    - name: cache
      mountPath: /cache
    {{- end }}
{{- end -}}

{{/* The engine pod's labels; only a serving pod carries the discovery selector switchyard.dev/engine */}}
{{- define "switchyard.enginePodLabels" -}}
{{ include "switchyard.metaLabels" .root }}
{{ include "switchyard.selectorLabels" (dict "root" .root "component" "engine") }}
switchyard.dev/model: {{ .model.name | quote }}
{{- if ne .role "worker" }}
# read by the router's Kubernetes discovery (docs/kubernetes.md#engine-discovery)
switchyard.dev/engine: "true"
switchyard.dev/role: {{ .model.role | quote }}
{{- else }}
switchyard.dev/group-role: worker
{{- end }}
{{- end -}}

{{- define "switchyard.enginePodAnnotations" -}}
{{- $e := .root.Values.engines -}}
{{- if ne .role "worker" }}
switchyard.dev/port: {{ $e.port | quote }}
switchyard.dev/served-model-name: {{ default .model.model .model.servedModelName | quote }}
{{- if and $e.kvEvents.enabled (not $e.kvEvents.collector.enabled) }}
switchyard.dev/kv-events-port: {{ $e.kvEvents.port | quote }}
{{- end }}
{{- end }}
{{- with $e.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod-level settings after `containers:` (volumes and GPU scheduling) */}}
{{- define "switchyard.enginePodTail" -}}
{{- $root := .root -}}
{{- $e := $root.Values.engines -}}
{{- $sim := eq $e.mode "sim" -}}
volumes:
  {{- include "switchyard.tmpVolume" $root | nindent 2 }}
  {{- if $e.lora.enabled }}
  {{- if and (not $e.lora.volume) (not $e.lora.hub) }}
  {{- fail "engines.lora.enabled needs engines.lora.volume (the volume holding the adapters' folders) or engines.lora.hub (adapters on the Hugging Face Hub)" }}
  {{- end }}
  {{- if $e.lora.volume }}
  - name: lora-adapters
    {{- toYaml $e.lora.volume | nindent 4 }}
  {{- end }}
  {{- end }}
  {{- if not $sim }}
  - name: dshm
    emptyDir:
      medium: Memory
      sizeLimit: {{ $e.shmSize }}
  - name: cache
    emptyDir:
      sizeLimit: 20Gi
  - name: model-cache
    {{- if eq $e.modelCache.type "pvc" }}
    persistentVolumeClaim:
      claimName: {{ default (printf "%s-model-cache" (include "switchyard.fullname" $root)) $e.modelCache.existingClaim }}
    {{- else }}
    emptyDir:
      sizeLimit: {{ $e.modelCache.sizeLimit }}
    {{- end }}
  {{- end }}
{{- if not $sim }}
{{- with $e.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $e.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $e.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Pod-level settings before `containers:` */}}
{{- define "switchyard.enginePodHead" -}}
{{- $root := .root -}}
automountServiceAccountToken: false
terminationGracePeriodSeconds: {{ $root.Values.engines.terminationGracePeriodSeconds }}
{{- if eq (include "switchyard.lmcacheLayout" $root) "mp" }}
# the node's LMCache server maps this engine's KV cache over CUDA IPC: one IPC namespace (the host's)
hostIPC: true
{{- end }}
securityContext:
  {{- toYaml $root.Values.podSecurityContext | nindent 2 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
