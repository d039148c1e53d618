// The chart's security promises, checked on `helm template` output: tenancy comes from Secrets (the
// router's --config ConfigMap parses with the router's own schema, so the chart cannot drift from
// it; keys and the cache-salt secret never sit in a ConfigMap), and every listener the chart opens
// has a NetworkPolicy that names who may call it (the endpoint picker only the gateway's proxies).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it, type TestContext } from "node:test";
import { parse as parseYaml } from "yaml";
import { parseConfig } from "../../src/router/config/config.js";
import { TenancyState } from "../../src/tenancy/state.js";
import { byKind, chart, container, one, render, renderRaw, type K8sObject } from "./chart.js";
import { requireTool } from "./tools.js";

const TENANCY = "tenancy-values.yaml";
/** the plain keys whose hashes ci/tenancy-values.yaml holds */
const PLAIN = { "team-a": "sk-switchyard-ci-team-a", batch: "sk-switchyard-ci-batch" };
const ADMIN = "sk-switchyard-ci-admin";
const ciFiles = readdirSync(join(chart, "ci"))
  .filter((f) => f.endsWith(".yaml"))
  .sort();

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
type Rule = { from?: Any[]; to?: Any[]; ports?: Array<{ port: number | string; protocol?: string }> };
type PodTemplate = { metadata: { labels?: Record<string, string> }; spec: Any };

const sha = (s: string) => createHash("sha256").update(s).digest("hex");
const subset = (sel: Record<string, string> | undefined, labels: Record<string, string> | undefined) =>
  Object.entries(sel ?? {}).every(([k, v]) => labels?.[k] === v);

/** Every pod template the chart renders (Deployments, DaemonSets, StatefulSets, Jobs, LeaderWorkerSet leaders and workers, RayCluster pods). */
function podTemplates(objs: K8sObject[]): PodTemplate[] {
  const out: PodTemplate[] = [];
  for (const o of objs) {
    if (["Deployment", "DaemonSet", "StatefulSet", "Job"].includes(o.kind)) out.push(o.spec.template);
    if (o.kind === "LeaderWorkerSet")
      out.push(o.spec.leaderWorkerTemplate.leaderTemplate, o.spec.leaderWorkerTemplate.workerTemplate);
    if (o.kind === "RayCluster")
      out.push(o.spec.headGroupSpec.template, ...o.spec.workerGroupSpecs.map((g: Any) => g.template));
  }
  return out;
}

/** The ingress rules that apply to a pod with these labels. */
function ingressFor(objs: K8sObject[], labels: Record<string, string>): Rule[] {
  return byKind(objs, "NetworkPolicy")
    .filter((np) => subset(np.spec.podSelector.matchLabels, labels))
    .flatMap((np) => np.spec.ingress ?? []);
}

const admitsPort = (rule: Rule, port: number, name?: string) =>
  rule.ports === undefined || rule.ports.some((p) => p.port === port || (name && p.port === name));

describe("helm chart: security", { timeout: 300_000 }, () => {
  const rendered = new Map<string, K8sObject[]>();
  const renderOf = (t: TestContext, file: string | undefined, extra: string[] = []) => {
    const helm = requireTool(t, "helm");
    if (!helm) return undefined;
    const key = `${file ?? "defaults"} ${extra.join(" ")}`;
    let objs = rendered.get(key);
    if (!objs) rendered.set(key, (objs = render(helm, file, extra)));
    return objs;
  };

  it("tenancy values: the router runs --config from a ConfigMap and mounts the keys Secret where keysDir points", (t) => {
    const objs = renderOf(t, TENANCY);
    if (!objs) return;
    const deploy = one(objs, "Deployment", "-router");
    const c = container(deploy);
    const flag = (c.args as string[]).find((a) => a.startsWith("--config="));
    assert.ok(flag, "the router gets --config");
    const configPath = flag.slice("--config=".length);
    const volumes = new Map<string, Any>(deploy.spec.template.spec.volumes.map((v: Any) => [v.name, v]));
    const mountOf = (path: string) =>
      (c.volumeMounts as Array<{ name: string; mountPath: string; readOnly?: boolean }>).find(
        (m) => path === m.mountPath || path.startsWith(`${m.mountPath}/`),
      );
    // the config file is the ConfigMap's router.yaml
    const cfgMount = mountOf(configPath)!;
    const cm = one(objs, "ConfigMap", "-router-config");
    assert.equal(volumes.get(cfgMount.name).configMap.name, cm.metadata.name);
    assert.equal(configPath, `${cfgMount.mountPath}/router.yaml`);
    // kubelet's ConfigMap swap goes unseen by the router's file watcher: a changed config rolls the pods
    assert.match(deploy.spec.template.metadata.annotations["checksum/tenancy"], /^[0-9a-f]{64}$/);
    // it parses with the router's own schema, the tenancy block as the router will run it
    const cfg = parseConfig(parseYaml(cm.data!["router.yaml"]!));
    const ten = cfg.tenancy!;
    assert.equal(ten.tenants["team-a"]!.weight, 2);
    assert.equal(ten.tenants["team-a"]!.cacheIsolation, true);
    assert.deepEqual(ten.keys, [], "no key hash in the ConfigMap");
    assert.deepEqual(ten.adminKeys, []);
    assert.equal(ten.cacheSaltSecret, undefined, "no salt in the ConfigMap");
    // keysDir is the chart-made keys Secret, read-only
    const keysMount = mountOf(ten.keysDir!)!;
    assert.equal(keysMount.mountPath, ten.keysDir);
    assert.equal(keysMount.readOnly, true);
    const keys = one(objs, "Secret", "-router-keys");
    assert.equal(volumes.get(keysMount.name).secret.secretName, keys.metadata.name);
    // the salt file is a key of the named Secret
    const saltMount = mountOf(ten.cacheSaltSecretFile!)!;
    const saltVol = volumes.get(saltMount.name).secret;
    assert.equal(saltVol.secretName, "switchyard-cache-salt");
    assert.deepEqual(saltVol.items, [
      { key: "salt", path: ten.cacheSaltSecretFile!.slice(saltMount.mountPath.length + 1) },
    ]);
  });

  it("tenancy with router replicas: the replicas' shared secret is a file from the named Secret, and without one the chart refuses", (t) => {
    const objs = renderOf(t, TENANCY);
    if (!objs) return;
    const deploy = one(objs, "Deployment", "-router");
    const c = container(deploy);
    const flag = (c.args as string[]).find((a) => a.startsWith("--peers-secret-file="));
    assert.ok(flag, "the router gets --peers-secret-file");
    const path = flag.slice("--peers-secret-file=".length);
    const mount = (c.volumeMounts as Array<{ name: string; mountPath: string; readOnly?: boolean }>).find(
      (m) => path.startsWith(`${m.mountPath}/`),
    )!;
    assert.equal(mount.readOnly, true);
    const vol = (deploy.spec.template.spec.volumes as Any[]).find((v) => v.name === mount.name).secret;
    assert.equal(vol.secretName, "switchyard-peers");
    assert.deepEqual(vol.items, [{ key: "secret", path: path.slice(mount.mountPath.length + 1) }]);
    // the same values without the Secret: refused, naming the value to set
    const r = renderRaw(requireTool(t, "helm")!, TENANCY, ["--set", "router.peers.secret.name="]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /router\.peers\.secret\.name/);
  });

  it("the rendered keys Secret and config, laid out as the pod sees them, authenticate the keys and salt the isolated tenant", (t) => {
    const objs = renderOf(t, TENANCY);
    if (!objs) return;
    const cfg = parseConfig(parseYaml(one(objs, "ConfigMap", "-router-config").data!["router.yaml"]!));
    const secret = one(objs, "Secret", "-router-keys") as K8sObject & { stringData: Record<string, string> };
    const dir = mkdtempSync(join(tmpdir(), "switchyard-keys-"));
    try {
      // kubelet writes each key of a Secret as a file of that name
      const keysDir = join(dir, "keys");
      mkdirSync(keysDir);
      for (const [k, v] of Object.entries(secret.stringData)) writeFileSync(join(keysDir, k), v);
      const saltFile = join(dir, "salt");
      writeFileSync(saltFile, "a-cache-salt-secret-of-32-chars!\n");
      const state = new TenancyState({ ...cfg.tenancy, keysDir, cacheSaltSecretFile: saltFile });
      assert.equal(state.authenticate(`Bearer ${PLAIN["team-a"]}`).name, "team-a");
      assert.equal(state.authenticate(`Bearer ${PLAIN.batch}`).name, "batch");
      assert.doesNotThrow(() => state.authenticateAdmin(`Bearer ${ADMIN}`));
      assert.throws(() => state.authenticate("Bearer sk-not-a-key"));
      assert.ok(state.tenant("team-a")!.cacheSalt, "team-a is salted");
      assert.equal(state.tenant("batch")!.cacheSalt, undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a salt Secret too short or missing refuses the tenancy config, naming the file and never its content", () => {
    const dir = mkdtempSync(join(tmpdir(), "switchyard-salt-"));
    try {
      const short = join(dir, "salt");
      writeFileSync(short, "tiny-salt\n");
      const cfg = { tenants: { a: { cacheIsolation: true } }, cacheSaltSecretFile: short };
      assert.throws(
        () => new TenancyState(cfg),
        (err: Error) => err.message.includes(short) && !err.message.includes("tiny-salt"),
      );
      const missing = { ...cfg, cacheSaltSecretFile: join(dir, "absent") };
      assert.throws(() => new TenancyState(missing), /ENOENT/);
      assert.throws(() => new TenancyState({ ...cfg, cacheSaltSecret: "0123456789abcdef0" }), /not both/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("no plain key and no salt secret in any ConfigMap; the keys Secret holds hashes only", (t) => {
    const objs = renderOf(t, TENANCY);
    if (!objs) return;
    const text = JSON.stringify(objs);
    for (const k of [...Object.values(PLAIN), ADMIN])
      assert.ok(!text.includes(k), "a plain key was rendered");
    for (const cm of byKind(objs, "ConfigMap")) {
      const data = JSON.stringify(cm.data ?? {});
      assert.ok(
        !/cacheSaltSecret"?:|cacheSaltSecret:/.test(data.replace(/cacheSaltSecretFile/g, "")),
        cm.metadata.name,
      );
      for (const k of [...Object.values(PLAIN), ADMIN])
        assert.ok(!data.includes(sha(k)), `${cm.metadata.name} holds a key hash`);
    }
    const secret = one(objs, "Secret", "-router-keys") as K8sObject & { stringData: Record<string, string> };
    assert.deepEqual(Object.keys(secret.stringData).sort(), ["_admin", "batch", "team-a"]);
    for (const v of Object.values(secret.stringData))
      for (const line of v.split("\n")) assert.match(line, /^(sha256:)?[0-9a-f]{64}$/);
    assert.ok(secret.stringData["team-a"]!.includes(sha(PLAIN["team-a"])));
    assert.ok(secret.stringData._admin!.includes(sha(ADMIN)));
  });

  it("tenancy values that would put a key or the salt in the chart's objects fail to render, naming the field", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const base = ["--values", join(chart, "ci", TENANCY)];
    const plain = renderRaw(helm, undefined, [
      ...base,
      "--set-json",
      'router.tenancy.keys.hashes={"team-a":["sk-plain-key"]}',
    ]);
    assert.notEqual(plain.status, 0);
    assert.match(plain.stderr, /hashes/);
    const admin = renderRaw(helm, undefined, [
      ...base,
      "--set-json",
      'router.tenancy.keys.adminHashes=["sk-admin"]',
    ]);
    assert.notEqual(admin.status, 0);
    assert.match(admin.stderr, /adminHashes/);
    const salt = renderRaw(helm, undefined, [
      ...base,
      "--set",
      "router.tenancy.config.cacheSaltSecret=0123456789abcdef0123",
    ]);
    assert.notEqual(salt.status, 0);
    assert.match(salt.stderr, /config/);
    const noSalt = renderRaw(helm, undefined, [...base, "--set", "router.tenancy.cacheSaltSecret.name="]);
    assert.notEqual(noSalt.status, 0);
    assert.match(noSalt.stderr, /cacheSaltSecret/);
  });

  it("an existing keys Secret is mounted by name and the chart makes none", (t) => {
    const objs = renderOf(t, TENANCY, ["--set", "router.tenancy.keys.existingSecret=tenant-keys"]);
    if (!objs) return;
    assert.equal(byKind(objs, "Secret").length, 0);
    const vols = one(objs, "Deployment", "-router").spec.template.spec.volumes;
    assert.ok(vols.some((v: Any) => v.secret?.secretName === "tenant-keys"));
  });

  it("with tenancy off the router gets no --config and no Secret", (t) => {
    const objs = renderOf(t, undefined);
    if (!objs) return;
    assert.ok(
      !(container(one(objs, "Deployment", "-router")).args as string[]).some((a) => a.startsWith("--config")),
    );
    assert.equal(byKind(objs, "Secret").length, 0);
  });

  it("every Service port of the chart is admitted by a NetworkPolicy rule that names its peers", (t) => {
    let checked = 0;
    for (const set of [undefined, ...ciFiles]) {
      const objs = renderOf(t, set);
      if (!objs) return;
      const pods = podTemplates(objs);
      // no ingress rule is open to everyone: each names its peers
      for (const np of byKind(objs, "NetworkPolicy"))
        for (const r of (np.spec.ingress ?? []) as Rule[])
          assert.ok(
            r.from && r.from.length > 0,
            `${set ?? "defaults"}: ${np.metadata.name} has a rule open to all`,
          );
      for (const svc of byKind(objs, "Service")) {
        const selected = pods.filter((p) => subset(svc.spec.selector, p.metadata.labels));
        assert.ok(selected.length > 0, `${set ?? "defaults"}: Service ${svc.metadata.name} selects no pod`);
        for (const port of svc.spec.ports as Array<{ port: number; targetPort?: number | string }>) {
          for (const pod of selected) {
            const target = port.targetPort ?? port.port;
            const cport = (pod.spec.containers as Any[])
              .flatMap((c) => c.ports ?? [])
              .find((p: Any) => p.name === target || p.containerPort === target);
            assert.ok(cport, `${svc.metadata.name}:${port.port} has no container port`);
            const rules = ingressFor(objs, pod.metadata.labels!);
            assert.ok(
              rules.some((r) => admitsPort(r, cport.containerPort, cport.name)),
              `${set ?? "defaults"}: ${svc.metadata.name}:${port.port} (pod port ${cport.containerPort}) has no NetworkPolicy rule`,
            );
            checked++;
          }
        }
      }
    }
    assert.ok(checked > 20, `only ${checked} ports checked`);
  });

  it("the endpoint picker admits the gateway's proxies only: with gatewayIngressFrom empty its port is closed", (t) => {
    const closed = renderOf(t, undefined, ["--set", "router.epp.enabled=true"]);
    if (!closed) return;
    const router = one(closed, "Deployment", "-router").spec.template;
    const epp = container({ spec: { template: router } } as K8sObject).ports.find(
      (p: Any) => p.name === "grpc-ext-proc",
    );
    assert.equal(epp.containerPort, 9002);
    const rules = ingressFor(closed, router.metadata.labels);
    assert.deepEqual(
      rules.filter((r) => admitsPort(r, 9002, "grpc-ext-proc")),
      [],
      "nobody may reach the picker",
    );
    // with the gateway named, exactly those peers
    const open = renderOf(t, "gateway-values.yaml")!;
    const gw = parseYaml(readFileSync(join(chart, "ci", "gateway-values.yaml"), "utf8")).networkPolicy
      .gatewayIngressFrom;
    const eppRules = ingressFor(
      open,
      one(open, "Deployment", "-router").spec.template.metadata.labels,
    ).filter((r) => admitsPort(r, 9002));
    assert.deepEqual(
      eppRules.map((r) => r.from),
      [gw],
    );
    // the engines' HTTP port: router, Prometheus and that gateway, nobody else
    const engineLabels = podTemplates(open).find(
      (p) => p.metadata.labels?.["app.kubernetes.io/component"] === "engine",
    )!.metadata.labels!;
    const httpFrom = ingressFor(open, engineLabels)
      .filter((r) => admitsPort(r, 8000))
      .map((r) => r.from);
    assert.equal(httpFrom.length, 3);
    assert.ok(httpFrom.some((f) => JSON.stringify(f) === JSON.stringify(gw)));
    // an InferencePool whose gateway is unnamed would be unreachable: refused
    const helm = requireTool(t, "helm")!;
    const r = renderRaw(helm, "gateway-values.yaml", ["--set-json", "networkPolicy.gatewayIngressFrom=[]"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /gatewayIngressFrom/);
  });

  it("KV events and the cache server: the engines' KV port admits the router only, the cache server the engines only", (t) => {
    const objs = renderOf(t, undefined);
    if (!objs) return;
    const component = (c: string) => ({
      podSelector: {
        matchLabels: {
          "app.kubernetes.io/component": c,
          "app.kubernetes.io/instance": "sy",
          "app.kubernetes.io/name": "switchyard",
        },
      },
    });
    const engine = one(objs, "NetworkPolicy", "-engine");
    const kv = (engine.spec.ingress as Rule[]).filter((r) => admitsPort(r, 5557));
    assert.deepEqual(
      kv.map((r) => r.from),
      [[component("router")]],
    );
    const cache = one(objs, "NetworkPolicy", "-cache-server");
    const lm = (cache.spec.ingress as Rule[]).filter((r) => admitsPort(r, 65432));
    assert.deepEqual(
      lm.map((r) => r.from),
      [[component("engine")]],
    );
  });

  it("egress: the router reaches engines, DNS and (with Kubernetes discovery) the API server; engines the cache server", (t) => {
    const objs = renderOf(t, "offload-values.yaml");
    if (!objs) return;
    const router = one(objs, "NetworkPolicy", "-router");
    assert.ok(router.spec.policyTypes.includes("Egress"));
    const out = router.spec.egress as Rule[];
    const to = (rules: Rule[], port: number) => rules.filter((r) => r.ports?.some((p) => p.port === port));
    assert.equal(to(out, 53).length, 1, "DNS");
    assert.equal(to(out, 8000)[0]!.to![0].podSelector.matchLabels["app.kubernetes.io/component"], "engine");
    assert.ok(to(out, 5557).length === 1, "KV-event subscriptions");
    assert.ok(to(out, 443).length === 1, "the API server, for Kubernetes discovery");
    const engine = one(objs, "NetworkPolicy", "-engine");
    assert.ok(engine.spec.policyTypes.includes("Egress"));
    const cacheOut = to(engine.spec.egress, 65432);
    assert.equal(cacheOut[0]!.to![0].podSelector.matchLabels["app.kubernetes.io/component"], "cache-server");
    // static discovery needs no API server
    const stat = renderOf(t, undefined, ["--set", "router.discovery.mode=static"])!;
    assert.equal(to(one(stat, "NetworkPolicy", "-router").spec.egress, 6443).length, 0);
  });
});
