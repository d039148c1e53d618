// The Helm chart: `helm lint` and `helm template` for the defaults and every values file in
// deploy/helm/switchyard/ci/ (a plan-emitted file dropped there is picked up too), every rendered
// core object validated offline against the Kubernetes schemas, and the properties the deployment
// promises checked on the rendered objects.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it, type TestContext } from "node:test";
import { parse as parseYaml, stringify } from "yaml";
import { freePorts, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { repoRoot, requireTool, run } from "./tools.js";
import {
  byKind,
  chart,
  container,
  CRD_GROUPS,
  envOf,
  NAMESPACE,
  one,
  RELEASE,
  render,
  RENDER_KUBE_VERSION,
  type K8sObject,
  YAML_1_1,
} from "./chart.js";

const root = repoRoot();
const ciFiles = readdirSync(join(chart, "ci"))
  .filter((f) => f.endsWith(".yaml") || f.endsWith(".yml"))
  .sort();
/** the oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas at hand */
const KUBE_VERSIONS = ["1.27.0", "1.37.0"];

describe("helm chart", { timeout: 300_000 }, () => {
  let helm: string | undefined;
  const rendered = new Map<string, K8sObject[]>();
  /** a render from the test above; skipped only where helm is absent (and CI is unset) */
  const renderOf = (t: TestContext, set: string): K8sObject[] | undefined => {
    if (!requireTool(t, "helm")) return undefined;
    const objs = rendered.get(set);
    assert.ok(objs, `${set} was not rendered`);
    return objs;
  };

  it("helm lint --strict passes for the defaults and every ci/ values file", (t) => {
    helm = requireTool(t, "helm");
    if (!helm) return;
    for (const f of [undefined, ...ciFiles]) {
      const args = [
        "lint",
        chart,
        "--strict",
        "--namespace",
        NAMESPACE,
        "--kube-version",
        RENDER_KUBE_VERSION,
      ];
      if (f) args.push("--values", join(chart, "ci", f));
      const r = run(helm, args);
      assert.equal(r.status, 0, `helm ${args.join(" ")}\n${r.stdout}${r.stderr}`);
    }
  });

  it("renders the defaults and every ci/ values file", (t) => {
    helm = requireTool(t, "helm");
    if (!helm) return;
    assert.ok(ciFiles.includes("gpu-values.yaml") && ciFiles.includes("sim-values.yaml"));
    assert.ok(ciFiles.includes("offload-values.yaml"));
    for (const f of [undefined, ...ciFiles]) {
      const objs = render(helm, f);
      assert.ok(objs.length > 10, `${f ?? "defaults"}: only ${objs.length} objects`);
      rendered.set(f ?? "defaults", objs);
    }
  });

  it("every rendered core object is valid against the Kubernetes schemas (strict, offline)", (t) => {
    const validator = requireTool(t, "kubernetes-validate");
    if (!validator || !renderOf(t, "defaults")) return;
    const dir = mkdtempSync(join(tmpdir(), "switchyard-helm-"));
    try {
      const files: string[] = [];
      // an object rendered the same by several values files is validated once: the same text gets
      // the same verdict, and most objects (accounts, services, rules) do not change between them
      const seen = new Set<string>();
      for (const [set, objs] of rendered) {
        objs.forEach((o, i) => {
          if (CRD_GROUPS.some((g) => o.apiVersion.startsWith(g))) return;
          const text = stringify(o, YAML_1_1);
          if (seen.has(text)) return;
          seen.add(text);
          const f = join(dir, `${set}-${i}-${o.kind}.yaml`);
          writeFileSync(f, text);
          files.push(f);
        });
      }
      assert.ok(files.length > 40, `only ${files.length} distinct core objects`);
      for (const v of KUBE_VERSIONS) {
        const r = run(validator, ["--strict", "--quiet", "-k", v, ...files], { timeoutMs: 240_000 });
        assert.equal(r.status, 0, `kubernetes-validate -k ${v}:\n${r.stdout}${r.stderr}`);
      }
      // and it does catch a mistake: a misspelt field in a Deployment
      const bad = join(dir, "bad.yaml");
      const deploy = structuredClone(byKind(rendered.get("defaults")!, "Deployment")[0]!);
      deploy.spec.template.spec.containers[0].imagePulPolicy = "Always";
      writeFileSync(bad, stringify(deploy, YAML_1_1));
      const r = run(validator, ["--strict", "--quiet", "-k", KUBE_VERSIONS[0]!, bad]);
      assert.notEqual(r.status, 0, "a misspelt field should fail strict validation");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("defaults: the whole production stack, monitoring included", (t) => {
    const objs = renderOf(t, "defaults");
    if (!objs) return;
    const kinds = new Set(objs.map((o) => o.kind));
    for (const k of [
      "Deployment",
      "Service",
      "ServiceAccount",
      "Role",
      "RoleBinding",
      "PodDisruptionBudget",
      "HorizontalPodAutoscaler",
      "ScaledObject",
      "ServiceMonitor",
      "PrometheusRule",
      "ConfigMap",
      "NetworkPolicy",
    ])
      assert.ok(kinds.has(k), `defaults render no ${k}`);
    assert.equal(byKind(objs, "ServiceMonitor").length, 3);
    assert.equal(byKind(objs, "NetworkPolicy").length, 3);
    // the HPA is the router's (CPU); engines scale on queued requests through KEDA
    const hpa = one(objs, "HorizontalPodAutoscaler", "-router");
    assert.equal(hpa.spec.scaleTargetRef.name, `${RELEASE}-switchyard-router`);
    const so = one(objs, "ScaledObject", "-engine-llama-3-1-8b");
    assert.equal(so.spec.scaleTargetRef.name, `${RELEASE}-switchyard-engine-llama-3-1-8b`);
    assert.equal(so.spec.triggers[0].type, "prometheus");
    assert.match(
      so.spec.triggers[0].metadata.query,
      /^sum\(vllm:num_requests_waiting\{namespace="inference",/,
    );
    assert.equal(
      one(objs, "Deployment", "-engine-llama-3-1-8b").spec.replicas,
      undefined,
      "KEDA owns replicas",
    );
  });

  it("router: probes on /health and /ready, RBAC to watch pods, PDB, discovery of this release's engines", (t) => {
    const objs = renderOf(t, "defaults");
    if (!objs) return;
    const d = one(objs, "Deployment", "-router");
    const c = container(d);
    assert.equal(c.readinessProbe.httpGet.path, "/ready");
    assert.equal(c.livenessProbe.httpGet.path, "/health");
    assert.equal(c.args[0], "router");
    assert.ok(
      c.args.includes(`--k8s-selector=switchyard.dev/engine=true,app.kubernetes.io/instance=${RELEASE}`),
    );
    assert.equal(d.spec.template.spec.serviceAccountName, `${RELEASE}-switchyard-router`);
    const role = one(objs, "Role", "-router");
    const rules = (role as unknown as { rules: Array<{ resources: string[]; verbs: string[] }> }).rules;
    assert.deepEqual(rules, [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "watch"] }]);
    assert.equal(one(objs, "PodDisruptionBudget", "-router").spec.minAvailable, 1);
    // a terminating engine pod's streams move after this; its preStop waits longer than that
    assert.ok(c.args.includes("--engine-drain-timeout=30s"));
  });

  it("engines: vLLM image and flags, KV events PUB socket, sha256_cbor, GPUs, /dev/shm, discovery labels, drain", (t) => {
    const objs = renderOf(t, "defaults");
    if (!objs) return;
    const d = one(objs, "Deployment", "-engine-llama-3-1-8b");
    const pod = d.spec.template;
    const c = container(d);
    assert.match(c.image, /^vllm\/vllm-openai:v/);
    assert.deepEqual(c.command, ["vllm", "serve"]);
    assert.equal(c.args[0], "meta-llama/Llama-3.1-8B-Instruct");
    for (const a of [
      "--dtype=auto",
      "--max-model-len=32768",
      "--tensor-parallel-size=1",
      "--gpu-memory-utilization=0.9",
      "--enable-prefix-caching",
      "--enable-chunked-prefill",
      "--prefix-caching-hash-algo=sha256_cbor",
    ])
      assert.ok(c.args.includes(a), `missing ${a} in ${c.args.join(" ")}`);
    const kv = c.args.find((a: string) => a.startsWith("--kv-events-config="));
    const kvConfig = JSON.parse(kv.slice("--kv-events-config=".length));
    assert.equal(kvConfig.enable_kv_cache_events, true);
    assert.equal(kvConfig.publisher, "zmq");
    assert.equal(kvConfig.endpoint, "tcp://*:5557");
    assert.equal(envOf(c).get("PYTHONHASHSEED")?.value, "0");
    assert.equal(c.resources.limits["nvidia.com/gpu"], 1);
    const shm = pod.spec.volumes.find((v: { name: string }) => v.name === "dshm");
    assert.equal(shm.emptyDir.medium, "Memory");
    assert.ok(c.volumeMounts.some((m: { mountPath: string }) => m.mountPath === "/dev/shm"));
    assert.ok(pod.spec.tolerations.some((x: { key: string }) => x.key === "nvidia.com/gpu"));
    assert.equal(pod.metadata.labels["switchyard.dev/engine"], "true");
    assert.equal(pod.metadata.labels["switchyard.dev/model"], "llama-3-1-8b");
    assert.equal(pod.metadata.labels["switchyard.dev/role"], "mixed");
    assert.equal(pod.metadata.annotations["switchyard.dev/port"], "8000");
    assert.equal(pod.metadata.annotations["switchyard.dev/kv-events-port"], "5557");
    assert.equal(
      pod.metadata.annotations["switchyard.dev/served-model-name"],
      "meta-llama/Llama-3.1-8B-Instruct",
    );
    assert.ok(c.ports.some((p: { containerPort: number }) => p.containerPort === 5557));
    assert.deepEqual(c.lifecycle.preStop.exec.command.slice(0, 2), ["python3", "-c"]);
    assert.match(c.lifecycle.preStop.exec.command[2], /vllm:num_requests_/);
    assert.ok(pod.spec.terminationGracePeriodSeconds >= 600);
  });

  it("every pod runs non-root with a read-only root filesystem", (t) => {
    if (!renderOf(t, "defaults")) return;
    for (const [set, objs] of rendered) {
      for (const d of [
        ...byKind(objs, "Deployment"),
        ...byKind(objs, "StatefulSet"),
        ...byKind(objs, "Job"),
      ]) {
        const spec = d.spec.template.spec;
        assert.equal(spec.securityContext.runAsNonRoot, true, `${set} ${d.metadata.name}`);
        for (const c of spec.containers) {
          assert.equal(c.securityContext.readOnlyRootFilesystem, true, `${set} ${d.metadata.name}/${c.name}`);
          assert.equal(c.securityContext.allowPrivilegeEscalation, false);
          assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
        }
      }
    }
  });

  it("network policy: the cache server admits engine pods only (plus Prometheus on its metrics port)", (t) => {
    const objs = renderOf(t, "defaults");
    if (!objs) return;
    const np = one(objs, "NetworkPolicy", "-cache-server");
    const [lm, metrics] = np.spec.ingress;
    assert.equal(lm.from.length, 1);
    assert.equal(lm.from[0].podSelector.matchLabels["app.kubernetes.io/component"], "engine");
    assert.deepEqual(lm.ports, [{ port: 65432, protocol: "TCP" }]);
    assert.deepEqual(metrics.ports, [{ port: 9090, protocol: "TCP" }]);
    assert.ok(metrics.from[0].namespaceSelector);
    const router = one(objs, "NetworkPolicy", "-router");
    assert.deepEqual(router.spec.ingress[0].from, [{ podSelector: {} }], "the release namespace by default");
  });

  it("the PrometheusRule is deploy/prometheus/*.rules.yaml and the dashboards are deploy/grafana/*.json", (t) => {
    const objs = renderOf(t, "defaults");
    if (!objs) return;
    const promDir = join(root, "deploy", "prometheus");
    const groups = readdirSync(promDir)
      .filter((f) => f.endsWith(".rules.yaml"))
      .sort()
      .flatMap((f) => (parseYaml(readFileSync(join(promDir, f), "utf8")) as { groups: unknown[] }).groups);
    assert.deepEqual(one(objs, "PrometheusRule", RELEASE + "-switchyard").spec.groups, groups);
    const grafanaDir = join(root, "deploy", "grafana");
    const dashboards = readdirSync(grafanaDir).filter((f) => f.endsWith(".json"));
    const cms = byKind(objs, "ConfigMap").filter((c) => c.metadata.labels?.grafana_dashboard === "1");
    assert.equal(cms.length, dashboards.length);
    for (const f of dashboards) {
      const cm = cms.find((c) => c.data?.[f] !== undefined);
      assert.ok(cm, `no dashboard ConfigMap carries ${f}`);
      assert.deepEqual(JSON.parse(cm.data![f]!), JSON.parse(readFileSync(join(grafanaDir, f), "utf8")));
    }
  });

  it("sim values: CPU-only engines from this project's image, same discovery labels and KV events", (t) => {
    const objs = renderOf(t, "sim-values.yaml");
    if (!objs) return;
    const engines = byKind(objs, "Deployment").filter((d) => d.metadata.name.includes("-engine-"));
    assert.equal(engines.length, 2);
    for (const d of engines) {
      const c = container(d);
      assert.match(c.image, /switchyard/);
      assert.equal(c.args[0], "sim");
      assert.ok(c.args.some((a: string) => a.startsWith("--kv-events-config=")));
      assert.ok(c.args.includes("--kv-offloading-size=8"));
      assert.equal(d.spec.template.metadata.labels["switchyard.dev/engine"], "true");
      assert.equal(d.spec.template.spec.tolerations, undefined);
      assert.deepEqual(c.lifecycle.preStop.exec.command.slice(0, 2), ["node", "-e"]);
    }
    assert.doesNotMatch(JSON.stringify(objs), /nvidia\.com\/gpu/);
  });

  it("lmcache-mp values: a vLLM 0.32 engine runs LMCache's own MP server per node, the cache server its RESP L2", (t) => {
    const objs = renderOf(t, "lmcache-mp-values.yaml");
    if (!objs) return;
    const d = one(objs, "Deployment", "-engine-llama-3-1-8b");
    const c = container(d);
    assert.ok(
      c.args.includes("--kv-offloading-backend=lmcache") && c.args.includes("--kv-offloading-size=80"),
    );
    const transfer = c.args.find((a: string) => a.startsWith("--kv-transfer-config="));
    assert.deepEqual(JSON.parse(transfer.slice("--kv-transfer-config=".length)), {
      kv_connector_extra_config: {
        "lmcache.mp.host": `tcp://${RELEASE}-switchyard-lmcache`,
        "lmcache.mp.port": 5555,
      },
    });
    assert.equal(d.spec.template.spec.hostIPC, true);
    assert.ok(
      ![...envOf(c).keys()].some((k) => k.startsWith("LMCACHE_")),
      "no in-process connector settings",
    );
    // LMCache's own image and server, one per node, on the engines' nodes
    const ds = one(objs, "DaemonSet", "-lmcache");
    const s = ds.spec.template.spec;
    assert.equal(s.hostIPC, true);
    assert.match(s.containers[0].image, /^lmcache\/standalone:/);
    assert.deepEqual(s.containers[0].command, ["/opt/venv/bin/lmcache", "server"]);
    const args: string[] = s.containers[0].args;
    assert.ok(args.includes("--port=5555") && args.includes("--l1-size-gb=80"));
    const l2 = args.find((a) => a.startsWith("--l2-adapter="))!;
    assert.deepEqual(JSON.parse(l2.slice("--l2-adapter=".length)), {
      type: "resp",
      host: `${RELEASE}-switchyard-cache-server`,
      port: 6379,
    });
    assert.deepEqual(s.tolerations, d.spec.template.spec.tolerations);
    assert.equal(one(objs, "Service", "-lmcache").spec.internalTrafficPolicy, "Local");
    // the cache server opens RESP for it
    assert.ok(container(one(objs, "Deployment", "-cache-server")).args.includes("--resp-port=6379"));
    // an older engine gets the in-process connector layout
    const old = render(helm!, "lmcache-mp-values.yaml", ["--set=engines.vllmImage.tag=v0.28.0"]);
    assert.equal(byKind(old, "DaemonSet").length, 0);
    const oc = container(one(old, "Deployment", "-engine-llama-3-1-8b"));
    assert.ok(oc.args.some((a: string) => a.includes("LMCacheConnectorV1")));
    assert.ok(!container(one(old, "Deployment", "-cache-server")).args.includes("--resp-port=6379"));
    // the default engine image is the vLLM 0.32 the project is held to: offload.mode=lmcache alone
    // renders LMCache's MP server
    const dflt = render(helm!, undefined, ["--set=engines.offload.mode=lmcache"]);
    assert.equal(
      container(one(dflt, "Deployment", "-engine-llama-3-1-8b")).image,
      "vllm/vllm-openai:v0.32.0",
    );
    assert.match(container(one(dflt, "DaemonSet", "-lmcache")).image, /^lmcache\/standalone:/);
  });

  it("offload values: LMCache connector pointed at the cache server; native offload flags", (t) => {
    const lm = renderOf(t, "offload-values.yaml");
    if (!lm) return;
    const c = container(one(lm, "Deployment", "-engine-llama-3-1-8b"));
    const transfer = c.args.find((a: string) => a.startsWith("--kv-transfer-config="));
    assert.deepEqual(JSON.parse(transfer.slice("--kv-transfer-config=".length)), {
      kv_connector: "LMCacheConnectorV1",
      kv_role: "kv_both",
    });
    const env = envOf(c);
    assert.equal(env.get("LMCACHE_REMOTE_URL")?.value, `lm://${RELEASE}-switchyard-cache-server:65432`);
    assert.equal(env.get("LMCACHE_CHUNK_SIZE")?.value, "256");
    assert.equal(env.get("LMCACHE_LOCAL_CPU")?.value, "True");
    assert.ok(env.has("LMCACHE_MAX_LOCAL_CPU_SIZE") && env.has("LMCACHE_REMOTE_SERDE"));
    const native = rendered.get("native-offload-values.yaml");
    if (native) {
      const n = container(one(native, "Deployment", "-engine-llama-3-1-8b"));
      assert.ok(
        n.args.includes("--kv-offloading-size=128") && n.args.includes("--kv-offloading-backend=native"),
      );
      assert.equal(
        byKind(native, "Deployment").filter((d) => d.metadata.name.endsWith("-cache-server")).length,
        0,
      );
    }
  });

  it("gpu values: tensor parallelism requests that many GPUs; weights on a PVC; HF token from a Secret", (t) => {
    const objs = renderOf(t, "gpu-values.yaml");
    if (!objs) return;
    const d = one(objs, "Deployment", "-engine-llama-3-1-70b");
    const c = container(d);
    assert.equal(c.resources.limits["nvidia.com/gpu"], 2);
    assert.equal(c.resources.requests["nvidia.com/gpu"], 2);
    assert.ok(
      c.args.includes("--tensor-parallel-size=2") && c.args.includes("--served-model-name=llama-70b"),
    );
    assert.deepEqual(envOf(c).get("HF_TOKEN")?.valueFrom, {
      secretKeyRef: { name: "hf-token", key: "token" },
    });
    const cache = d.spec.template.spec.volumes.find((v: { name: string }) => v.name === "model-cache");
    assert.equal(cache.persistentVolumeClaim.claimName, `${RELEASE}-switchyard-model-cache`);
    assert.equal(byKind(objs, "PersistentVolumeClaim").length, 1);
    assert.equal(d.spec.template.spec.nodeSelector["nvidia.com/gpu.product"], "NVIDIA-H100-80GB-HBM3");
  });

  it("monitoring switches turn the CRD objects off", (t) => {
    const h = requireTool(t, "helm");
    if (!h) return;
    const objs = render(h, undefined, [
      "--set=monitoring.serviceMonitors.enabled=false",
      "--set=monitoring.prometheusRule.enabled=false",
      "--set=engines.autoscaling.enabled=false",
    ]);
    assert.equal(objs.filter((o) => CRD_GROUPS.some((g) => o.apiVersion.startsWith(g))).length, 0);
    assert.equal(one(objs, "Deployment", "-engine-llama-3-1-8b").spec.replicas, 1);
  });

  it("router replicas find each other through a headless Service and share load; a single replica has no peers", (t) => {
    const h = requireTool(t, "helm");
    if (!h) return;
    const objs = render(h);
    const args: string[] = container(one(objs, "Deployment", "-router")).args;
    assert.ok(args.includes("--peers-bind=tcp://*:5590"), args.join(" "));
    // the pod's port is the router's alone: a burst of connections is accepted on 64 sockets (auto)
    assert.ok(args.includes("--listen-sockets=auto"), args.join(" "));
    const svc = one(objs, "Service", "-router-peers");
    assert.ok(args.includes(`--peers-dns=${svc.metadata.name}:5590`), args.join(" "));
    assert.equal(svc.spec.clusterIP, "None");
    assert.equal(svc.spec.publishNotReadyAddresses, true);
    // the router's NetworkPolicy admits other router pods on the peers port
    const np = one(objs, "NetworkPolicy", "-router");
    const rule = np.spec.ingress.find((r: { ports: Array<{ port: number }> }) =>
      r.ports.some((p) => p.port === 5590),
    );
    assert.equal(rule?.from?.[0]?.podSelector?.matchLabels?.["app.kubernetes.io/component"], "router");
    const single = render(h, undefined, [
      "--set=router.replicas=1",
      "--set=router.autoscaling.enabled=false",
    ]);
    const singleArgs: string[] = container(one(single, "Deployment", "-router")).args;
    assert.ok(!singleArgs.some((a) => a.startsWith("--peers")), singleArgs.join(" "));
    assert.equal(single.filter((o) => o.kind === "Service" && o.metadata.name.endsWith("-peers")).length, 0);
  });

  it("bad values fail early with a message naming the field", (t) => {
    const h = requireTool(t, "helm");
    if (!h) return;
    const cases: Array<[string[], RegExp]> = [
      [["--set=engines.mode=gpu"], /engines\.mode|mode/],
      [["--set=engines.models[0].tensorParallelSize=0"], /tensorParallelSize/],
      [["--set=engines.models[0].name=Bad_Name"], /name/],
      [["--set=engines.models[0].gpuMemoryUtilization=1.5"], /gpuMemoryUtilization/],
      [["--set=engines.prefixCachingHashAlgo=sha256"], /prefixCachingHashAlgo/],
      [["--set=engines.offload.mode=disk"], /offload/],
      [["--set=router.policy=random"], /policy/],
      [["--set=router.repliccas=3"], /repliccas/],
      [
        [
          "--set=engines.mode=sim",
          "--set=engines.offload.mode=lmcache",
          "--set=engines.offload.lmcache.layout=mp",
        ],
        /layout=mp needs engines\.mode=vllm/,
      ],
    ];
    for (const [args, why] of cases) {
      const r = run(h, ["template", RELEASE, chart, "--kube-version", RENDER_KUBE_VERSION, ...args]);
      assert.notEqual(r.status, 0, `helm template ${args.join(" ")} should fail`);
      assert.match(r.stderr, why, `helm template ${args.join(" ")}: ${r.stderr}`);
    }
  });

  after(() => rendered.clear());
});

describe("rendered commands run under the real CLI", { timeout: 180_000 }, () => {
  it("a sim engine pod's args start a sim that serves vLLM metrics and KV events; its drain hook exits", async (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const [port, kvPort] = await freePorts(2);
    const objs = render(helm, "sim-values.yaml", [
      `--set=engines.port=${port}`,
      `--set=engines.kvEvents.port=${kvPort}`,
      "--set=engines.drain.delaySeconds=0",
      // an hour, far past this test's own timeout: a hook that returns at all saw the engine idle
      "--set=engines.drain.timeoutSeconds=3600",
    ]);
    const c = container(one(objs, "Deployment", "-engine-qwen-0-5b"));
    // loopback only in tests
    const args = (c.args as string[]).map((a) =>
      a === "--host=0.0.0.0" ? "--host=127.0.0.1" : a.replace("tcp://*:", "tcp://127.0.0.1:"),
    );
    const env = Object.fromEntries(
      (c.env as Array<{ name: string; value?: string }>)
        .filter((e) => e.value)
        .map((e) => [e.name, e.value!]),
    );
    const sim = spawnCli(args, env);
    try {
      await waitForHttp(`http://127.0.0.1:${port}/health`, 30_000);
      const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(
        metrics,
        /^vllm:num_requests_waiting\{model_name="Qwen\/Qwen2.5-0.5B-Instruct",engine="0"\} 0$/m,
      );
      assert.match(metrics, /^vllm:kv_offload_size/m);
      assert.match(sim.output(), new RegExp(`tcp://127\\.0\\.0\\.1:${kvPort}`));
      const [cmd, flag, script] = c.lifecycle.preStop.exec.command as string[];
      assert.equal(cmd, "node");
      const drainExit = () => {
        const child = spawn(process.execPath, [flag!, script!], { stdio: "ignore" });
        return new Promise<number | null>((resolve) => child.once("exit", resolve));
      };
      // idle: the hook returns (its hour-long timeout cannot be what ended it)
      assert.equal(await drainExit(), 0);
      // a long stream in flight holds the hook until the stream ends
      const abort = new AbortController();
      const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "Qwen/Qwen2.5-0.5B-Instruct",
          prompt: "tell me a long story",
          max_tokens: 4000,
          ignore_eos: true,
          stream: true,
        }),
        signal: abort.signal,
      });
      const reader = res.body!.getReader();
      await reader.read();
      let drained = false;
      const draining = drainExit().then((code) => {
        drained = true;
        return code;
      });
      await new Promise((r) => setTimeout(r, 2_500));
      assert.equal(drained, false, "the hook returned while a stream was running");
      abort.abort();
      await reader.cancel().catch(() => undefined);
      assert.equal(await draining, 0);
    } finally {
      await sim.stop();
    }
  });

  it("the cache server's rendered args start a cache server with metrics", async (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const [port, metricsPort] = await freePorts(2);
    const objs = render(helm, undefined, [
      `--set=cacheServer.port=${port}`,
      `--set=cacheServer.metricsPort=${metricsPort}`,
      "--set=cacheServer.maxMemory=64MiB",
    ]);
    const c = container(one(objs, "Deployment", "-cache-server"));
    const args = (c.args as string[]).map((a) => (a === "--host=0.0.0.0" ? "--host=127.0.0.1" : a));
    const server = spawnCli(args);
    try {
      await waitForHttp(`http://127.0.0.1:${metricsPort}${c.livenessProbe.httpGet.path}`, 30_000);
      const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
      assert.match(metrics, /^switchyard_cache_memory_budget_bytes 67108864$/m);
    } finally {
      await server.stop();
    }
  });
});
