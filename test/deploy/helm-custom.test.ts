// The chart's custom-resource paths: multi-node engines (LeaderWorkerSet groups, KubeRay
// RayClusters), the Gateway API Inference Extension (InferencePool with the router's endpoint
// picker, HTTPRoute) and KV events in collector mode. Every rendered LeaderWorkerSet, RayCluster,
// InferencePool and HTTPRoute is validated strictly against its project's published CRD
// (deploy/ci/fetch-crds.sh, test/deploy/crd_validate.py); the core objects of these values files
// go through kubernetes-validate with the rest in helm.test.ts.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it, type TestContext } from "node:test";
import { stringify } from "yaml";
import { Subscriber } from "zeromq";
import { freePorts, spawnCli } from "../../bench/support/cli.js";
import {
  byKind,
  envOf,
  one,
  PUBLISHED_CRD_KINDS,
  RELEASE,
  render,
  renderRaw,
  type K8sObject,
  YAML_1_1,
} from "./chart.js";
import { repoRoot, requireCrds, requirePython, requireTool, run } from "./tools.js";

const LWS = "multinode-lws-values.yaml";
const RAY = "multinode-ray-values.yaml";
const GATEWAY = "gateway-values.yaml";
const COLLECTOR = "kv-collector-values.yaml";
const MODEL_70B = "meta-llama/Llama-3.1-70B-Instruct";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Pod = { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: any };

const gpus = (pod: Pod) => pod.spec.containers[0].resources.limits["nvidia.com/gpu"];
const args = (pod: Pod): string[] => pod.spec.containers[0].args ?? [];

describe("helm chart: custom resources", { timeout: 300_000 }, () => {
  const rendered = new Map<string, K8sObject[]>();
  const renderOf = (t: TestContext, file: string): K8sObject[] | undefined => {
    const helm = requireTool(t, "helm");
    if (!helm) return undefined;
    let objs = rendered.get(file);
    if (!objs) rendered.set(file, (objs = render(helm, file)));
    return objs;
  };

  it("LeaderWorkerSet: a 70B TP8×PP2 group of 2 pods × 8 GPUs; the leader serves over Ray, the worker joins it", (t) => {
    const objs = renderOf(t, LWS);
    if (!objs) return;
    const lws = one(objs, "LeaderWorkerSet", "-engine-llama-3-1-70b");
    const tpl = lws.spec.leaderWorkerTemplate;
    assert.equal(tpl.size, 2);
    assert.equal(tpl.restartPolicy, "RecreateGroupOnPodRestart");
    assert.equal(lws.spec.startupPolicy, "LeaderCreated");
    assert.equal(lws.spec.replicas, undefined, "KEDA owns the group count");
    const leader: Pod = tpl.leaderTemplate;
    const worker: Pod = tpl.workerTemplate;
    // discovery, the engine Service and the InferencePool see the leader only
    assert.equal(leader.metadata.labels["switchyard.dev/engine"], "true");
    assert.equal(worker.metadata.labels["switchyard.dev/engine"], undefined);
    assert.equal(leader.metadata.annotations!["switchyard.dev/port"], "8000");
    assert.equal(gpus(leader), 8);
    assert.equal(gpus(worker), 8);
    const lc = leader.spec.containers[0];
    assert.deepEqual(lc.command.slice(0, 2), ["/bin/bash", "-c"]);
    assert.match(lc.command[2], /ray start --head --port=6379 .*--num-gpus=8 --block &/);
    assert.match(lc.command[2], /< 2:/, "waits for both nodes");
    assert.deepEqual(lc.command.slice(3), ["engine", "vllm", "serve"]);
    for (const a of [
      MODEL_70B,
      "--tensor-parallel-size=8",
      "--pipeline-parallel-size=2",
      "--distributed-executor-backend=ray",
    ])
      assert.ok(args(leader).includes(a), `leader lacks ${a}`);
    assert.equal(lc.readinessProbe.httpGet.path, "/health");
    assert.ok(lc.lifecycle.preStop, "the leader drains like a single-pod engine");
    const wc = worker.spec.containers[0];
    assert.match(wc.command[2], /ray start --address=\$\(LWS_LEADER_ADDRESS\):6379 --num-gpus=8 --block/);
    assert.equal(wc.livenessProbe.httpGet.path, "/api/local_raylet_healthz");
    assert.equal(
      wc.ports.some((p: { name: string }) => p.name === "http"),
      false,
    );
    // the multiprocessing backend: the worker runs vLLM headless with its rank from LeaderWorkerSet
    const mp = one(objs, "LeaderWorkerSet", "-engine-llama-3-1-405b").spec.leaderWorkerTemplate;
    for (const a of ["--distributed-executor-backend=mp", "--nnodes=$(LWS_GROUP_SIZE)", "--node-rank=0"])
      assert.ok(args(mp.leaderTemplate).includes(a), `mp leader lacks ${a}`);
    for (const a of ["--node-rank=$(LWS_WORKER_INDEX)", "--headless", "--master-addr=$(LWS_LEADER_ADDRESS)"])
      assert.ok(args(mp.workerTemplate).includes(a), `mp worker lacks ${a}`);
    assert.ok(!args(mp.workerTemplate).some((a) => a.startsWith("--kv-events-config")));
    // per group: a PDB over the model's pods, KEDA scaling whole groups, a Service of leaders
    const pdb = one(objs, "PodDisruptionBudget", "-engine-llama-3-1-70b");
    assert.equal(pdb.spec.maxUnavailable, 1);
    assert.equal(pdb.spec.selector.matchLabels["switchyard.dev/model"], "llama-3-1-70b");
    const so = one(objs, "ScaledObject", "-engine-llama-3-1-70b");
    assert.deepEqual(so.spec.scaleTargetRef, {
      apiVersion: "leaderworkerset.x-k8s.io/v1",
      kind: "LeaderWorkerSet",
      name: lws.metadata.name,
    });
    const svc = one(objs, "Service", "-engine-llama-3-1-70b");
    assert.equal(svc.spec.selector["switchyard.dev/engine"], "true");
    assert.equal(
      byKind(objs, "Deployment").filter((d) => d.metadata.name.includes("-engine-")).length,
      0,
      "no single-pod Deployment for a multi-node model",
    );
    // a group's pods talk to each other (Ray, NCCL, torch) on ports they choose
    const np = one(objs, "NetworkPolicy", `${RELEASE}-switchyard-engine`);
    assert.ok(np.spec.ingress.some((r: { from?: unknown[]; ports?: unknown }) => r.from && !r.ports));
  });

  it("RayCluster switch: one KubeRay cluster per replica, its head serving once the workers joined", (t) => {
    const objs = renderOf(t, RAY);
    if (!objs) return;
    const clusters = byKind(objs, "RayCluster");
    assert.deepEqual(
      clusters.map((c) => c.metadata.name),
      [`${RELEASE}-switchyard-engine-llama-3-1-70b-0`, `${RELEASE}-switchyard-engine-llama-3-1-70b-1`],
    );
    for (const rc of clusters) {
      assert.equal(rc.metadata.annotations!["ray.io/overwrite-container-cmd"], "true");
      const head: Pod = rc.spec.headGroupSpec.template;
      assert.equal(head.metadata.labels["switchyard.dev/engine"], "true");
      assert.match(head.spec.containers[0].command[2], /eval "\$KUBERAY_GEN_RAY_START_CMD" &/);
      assert.ok(args(head).includes("--pipeline-parallel-size=2"));
      assert.equal(gpus(head), 8);
      const [group] = rc.spec.workerGroupSpecs;
      assert.equal(group.replicas, 1);
      assert.equal(group.minReplicas, 1);
      assert.equal(group.template.metadata.labels["switchyard.dev/engine"], undefined);
      assert.equal(gpus(group.template), 8);
    }
    assert.equal(byKind(objs, "ScaledObject").length, 0, "KEDA does not scale RayClusters");
    assert.equal(byKind(objs, "LeaderWorkerSet").length, 0);
  });

  it("InferencePool + HTTPRoute: the pool selects the serving engines and names the router's endpoint picker", (t) => {
    const objs = renderOf(t, GATEWAY);
    if (!objs) return;
    const pool = one(objs, "InferencePool", `${RELEASE}-switchyard`);
    assert.equal(pool.apiVersion, "inference.networking.k8s.io/v1");
    assert.deepEqual(pool.spec.selector.matchLabels, {
      "switchyard.dev/engine": "true",
      "app.kubernetes.io/instance": RELEASE,
    });
    assert.deepEqual(pool.spec.targetPorts, [{ number: 8000 }]);
    assert.deepEqual(pool.spec.endpointPickerRef, {
      kind: "Service",
      name: `${RELEASE}-switchyard-router`,
      port: { number: 9002 },
      failureMode: "FailClose",
    });
    const router = one(objs, "Deployment", "-router").spec.template.spec.containers[0];
    assert.ok(router.args.includes("--epp-port=9002"));
    assert.ok(router.ports.some((p: { name: string; containerPort: number }) => p.containerPort === 9002));
    const svc = one(objs, "Service", "-router");
    assert.ok(
      svc.spec.ports.some(
        (p: { name: string; port: number }) => p.name === "grpc-ext-proc" && p.port === 9002,
      ),
    );
    const route = one(objs, "HTTPRoute", `${RELEASE}-switchyard`);
    assert.deepEqual(route.spec.rules[0].backendRefs, [
      { group: "inference.networking.k8s.io", kind: "InferencePool", name: pool.metadata.name },
    ]);
    assert.deepEqual(route.spec.parentRefs, [{ name: "inference-gateway", namespace: "gateway-system" }]);
    // the gateway's proxies reach the engines (they proxy to them) and the picker
    const gw = {
      namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "gateway-system" } },
      podSelector: { matchLabels: { "gateway.envoyproxy.io/owning-gateway-name": "inference-gateway" } },
    };
    const engineNp = one(objs, "NetworkPolicy", `${RELEASE}-switchyard-engine`);
    assert.ok(
      engineNp.spec.ingress.some(
        (r: { from?: unknown[] }) => JSON.stringify(r.from) === JSON.stringify([gw]),
      ),
    );
    const routerNp = one(objs, "NetworkPolicy", "-router");
    assert.ok(
      routerNp.spec.ingress.some(
        (r: { ports: Array<{ port: number }>; from?: unknown[] }) =>
          r.ports[0]!.port === 9002 && JSON.stringify(r.from) === JSON.stringify([gw]),
      ),
    );
  });

  it("KV events in collector mode: the router binds, every engine connects to its Service with its pod IP in the topic", (t) => {
    const objs = renderOf(t, COLLECTOR);
    if (!objs) return;
    const router = one(objs, "Deployment", "-router").spec.template.spec.containers[0];
    assert.ok(router.args.includes("--kv-events-bind=tcp://*:5558"));
    const svc = one(objs, "Service", "-router");
    assert.ok(
      svc.spec.ports.some(
        (p: { name: string; port: number }) => p.name === "kv-collector" && p.port === 5558,
      ),
    );
    const engine = one(objs, "Deployment", "-engine-llama-3-1-8b").spec.template;
    const c = engine.spec.containers[0];
    const kv = JSON.parse(
      c.args.find((a: string) => a.startsWith("--kv-events-config=")).slice("--kv-events-config=".length),
    );
    assert.equal(
      kv.endpoint,
      `tcp://${RELEASE}-switchyard-router:5558`,
      "no wildcard: the publisher connects",
    );
    assert.equal(kv.topic, "kv@$(POD_IP):8000@meta-llama/Llama-3.1-8B-Instruct");
    assert.deepEqual(envOf(c).get("POD_IP")?.valueFrom, { fieldRef: { fieldPath: "status.podIP" } });
    assert.equal(
      engine.metadata.annotations["switchyard.dev/kv-events-port"],
      undefined,
      "no engine socket to subscribe to",
    );
    assert.ok(!c.ports.some((p: { name: string }) => p.name === "kv-events"));
    const routerNp = one(objs, "NetworkPolicy", "-router");
    assert.ok(
      routerNp.spec.ingress.some((r: { ports: Array<{ port: number }> }) => r.ports[0]!.port === 5558),
    );
  });

  it("every LeaderWorkerSet, RayCluster, InferencePool and HTTPRoute validates strictly against its published CRD", (t) => {
    const crds = requireCrds(t);
    // the script's own imports, cel-python included: without it no CEL rule would be checked
    const python =
      crds && requirePython(t, ["jsonschema", "yaml", "celpy"], ["jsonschema", "pyyaml", "cel-python"]);
    if (!python || !renderOf(t, LWS)) return;
    const dir = mkdtempSync(join(tmpdir(), "switchyard-crd-"));
    const script = join(repoRoot(), "test", "deploy", "crd_validate.py");
    try {
      const objs = [LWS, RAY, GATEWAY]
        .flatMap((f) => renderOf(t, f)!)
        .filter((o) => PUBLISHED_CRD_KINDS.includes(o.kind));
      assert.deepEqual([...new Set(objs.map((o) => o.kind))].sort(), [...PUBLISHED_CRD_KINDS].sort());
      const file = join(dir, "custom.yaml");
      writeFileSync(file, objs.map((o) => stringify(o, YAML_1_1)).join("---\n"));
      // and it catches mistakes: an unknown field deep in a pod template, a CEL rule, a pattern
      const lws = structuredClone(objs.find((o) => o.kind === "LeaderWorkerSet")!);
      lws.spec.leaderWorkerTemplate.workerTemplate.spec.containers[0].imagePulPolicy = "Always";
      const pool = structuredClone(objs.find((o) => o.kind === "InferencePool")!);
      pool.spec.targetPorts.push({ number: 8000 });
      const route = structuredClone(objs.find((o) => o.kind === "HTTPRoute")!);
      route.spec.rules[0].timeouts.request = "5 minutes";
      const bad = { "bad-field.yaml": lws, "bad-cel.yaml": pool, "bad-pattern.yaml": route };
      for (const [name, o] of Object.entries(bad)) writeFileSync(join(dir, name), stringify(o, YAML_1_1));
      const r = run(python, [script, crds!, file, ...Object.keys(bad).map((n) => join(dir, n))], {
        timeoutMs: 240_000,
      });
      const report = JSON.parse(r.stdout) as { objects: number; rules_checked: number; errors: string[] };
      assert.deepEqual(
        report.errors.filter((e) => e.startsWith("custom.yaml")),
        [],
        "the rendered objects are valid",
      );
      assert.equal(report.objects, objs.length + 3);
      assert.ok(report.rules_checked > 10, `CEL rules checked: ${report.rules_checked}`);
      for (const [name, why] of [
        ["bad-field.yaml", /'imagePulPolicy' was unexpected/],
        ["bad-cel.yaml", /port number must be unique/],
        ["bad-pattern.yaml", /does not match/],
      ] as const)
        assert.ok(
          report.errors.some((e) => e.startsWith(name) && why.test(e)),
          `${name} should fail: ${report.errors.join("\n")}`,
        );
      assert.equal(r.status, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("multi-node pods run non-root with a read-only root filesystem too", (t) => {
    const lws = renderOf(t, LWS);
    const ray = lws && renderOf(t, RAY);
    if (!ray) return;
    const pods: Pod[] = [
      ...byKind(lws, "LeaderWorkerSet").flatMap((o) => [
        o.spec.leaderWorkerTemplate.leaderTemplate,
        o.spec.leaderWorkerTemplate.workerTemplate,
      ]),
      ...byKind(ray, "RayCluster").flatMap((o) => [
        o.spec.headGroupSpec.template,
        o.spec.workerGroupSpecs[0].template,
      ]),
    ];
    assert.equal(pods.length, 8);
    for (const p of pods) {
      assert.equal(p.spec.securityContext.runAsNonRoot, true);
      assert.equal(p.spec.containers[0].securityContext.readOnlyRootFilesystem, true);
      assert.ok(p.spec.volumes.some((v: { name: string }) => v.name === "dshm"));
    }
  });

  it("values these paths cannot serve fail early with a message naming the field", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const dir = mkdtempSync(join(tmpdir(), "switchyard-values-"));
    const model = (multiNode: Record<string, unknown>, over: Record<string, unknown> = {}) => ({
      name: "m",
      model: "meta-llama/Llama-3.1-70B-Instruct",
      role: "mixed",
      replicas: 1,
      dtype: "auto",
      maxModelLen: 8192,
      tensorParallelSize: 8,
      pipelineParallelSize: 2,
      gpuMemoryUtilization: 0.9,
      enablePrefixCaching: true,
      enableChunkedPrefill: true,
      maxNumSeqs: 64,
      extraArgs: [],
      resources: {},
      sim: { gpu: "h100", timeScale: 1 },
      multiNode: { enabled: true, ...multiNode },
      ...over,
    });
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ engines: { mode: "sim", models: [model({})] } }, /multiNode needs engines\.mode=vllm/],
      [{ engines: { models: [model({ nodes: 3 })] } }, /must divide evenly over multiNode\.nodes/],
      [
        { engines: { models: [model({ kind: "rayCluster", backend: "mp" })] } },
        /rayCluster runs the ray backend only/,
      ],
      [{ engines: { models: [model({ nodes: 1 })] } }, /nodes/],
      [{ engines: { models: [model({ kind: "lws" })] } }, /kind/],
      [{ gateway: { inferencePool: { enabled: true } } }, /router\.epp\.enabled/],
      [{ gateway: { httpRoute: { enabled: true } } }, /enable gateway\.inferencePool/],
      [{ engines: { kvEvents: { collector: { enabled: true } } } }, /router\.replicas=1/],
    ];
    try {
      for (const [i, [values, why]] of cases.entries()) {
        const file = join(dir, `v${i}.yaml`);
        writeFileSync(file, stringify(values));
        const r = renderRaw(helm, file);
        assert.notEqual(r.status, 0, `${JSON.stringify(values)} should fail`);
        assert.match(r.stderr, why, `${JSON.stringify(values)}: ${r.stderr}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  after(() => rendered.clear());
});

describe("collector mode's rendered engine args under the real CLI", { timeout: 180_000 }, () => {
  it("a sim engine pod connects out to a bound collector and publishes with its address in the topic", async (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const [port, collector] = await freePorts(2);
    const objs = render(helm, COLLECTOR, [
      `--set=engines.port=${port}`,
      `--set=engines.kvEvents.collector.port=${collector}`,
    ]);
    const c = one(objs, "Deployment", "-engine-llama-3-1-8b").spec.template.spec.containers[0];
    // what Kubernetes would do: $(POD_IP) expanded, the router's Service name resolving (here: loopback)
    const argv = (c.args as string[]).map((a) =>
      a
        .replace("--host=0.0.0.0", "--host=127.0.0.1")
        .replaceAll("$(POD_IP)", "127.0.0.1")
        .replace(`tcp://${RELEASE}-switchyard-router:`, "tcp://127.0.0.1:"),
    );
    const sub = new Subscriber();
    sub.subscribe("kv@");
    await sub.bind(`tcp://127.0.0.1:${collector}`);
    const sim = spawnCli(argv);
    try {
      let topic = "";
      const got = (async () => {
        for await (const [t0] of sub) {
          topic = t0!.toString();
          return;
        }
      })();
      for (let i = 0; i < 100 && topic === ""; i++) {
        const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({
            model: "meta-llama/Llama-3.1-8B-Instruct",
            prompt: "hello ".repeat(40),
            max_tokens: 1,
          }),
        }).catch(() => undefined);
        await res?.arrayBuffer();
        await Promise.race([got, new Promise((r) => setTimeout(r, 200))]);
      }
      assert.equal(topic, `kv@127.0.0.1:${port}@meta-llama/Llama-3.1-8B-Instruct`, sim.output().slice(-2000));
    } finally {
      sub.close();
      await sim.stop();
    }
  });
});
