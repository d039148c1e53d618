// The shared KV tier behind LMCache's MP servers (engines.offload.l2): the chart's cache server over
// RESP, a Valkey/Redis (Cluster) you run through LMCache's valkey adapter (TLS, credentials from a
// Secret), or a Valkey Cluster the chart runs (a StatefulSet of primaries and replicas joined by a Job,
// with its NetworkPolicy, probes and PDB), checked on `helm template` output; the rendered server
// options start a real redis-server in cluster mode where one is installed.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import { freePorts } from "../../bench/support/cli.js";
import {
  byKind,
  container,
  envOf,
  NAMESPACE,
  one,
  RELEASE,
  renderCache,
  renderRaw,
  type K8sObject,
} from "./chart.js";
import { findTool, requireTool, run, skipForTool } from "./tools.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const CLUSTER = `${RELEASE}-switchyard-kv-cluster`;

/** the JSON of the MP server's --l2-adapter, or undefined without one */
function adapterOf(objs: K8sObject[]): Record<string, unknown> | undefined {
  const args: string[] = container(one(objs, "DaemonSet", "-lmcache")).args;
  const a = args.find((x) => x.startsWith("--l2-adapter="));
  return a === undefined ? undefined : JSON.parse(a.slice("--l2-adapter=".length));
}

describe("helm chart: the shared KV tier (engines.offload.l2)", { timeout: 300_000 }, () => {
  const renderOf = renderCache();

  it("cluster: a StatefulSet of 3 primaries and 3 replicas in cluster mode, joined by a Job, the MP servers' valkey L2 in cluster mode", (t) => {
    const objs = renderOf(t, "kv-cluster-values.yaml");
    if (!objs) return;
    const sts = one(objs, "StatefulSet", "-kv-cluster");
    assert.equal(sts.spec.replicas, 6);
    assert.equal(sts.spec.serviceName, CLUSTER);
    const c = sts.spec.template.spec.containers[0];
    assert.match(c.image, /^valkey\/valkey:/);
    assert.deepEqual(c.command, ["valkey-server"]);
    const opt = (name: string) => c.args[c.args.indexOf(name) + 1];
    assert.equal(opt("--cluster-enabled"), "yes");
    assert.equal(opt("--maxmemory"), "64gb");
    assert.equal(opt("--maxmemory-policy"), "allkeys-lru");
    assert.equal(opt("--cluster-config-file"), "/data/nodes.conf");
    assert.equal(opt("--save"), "");
    // probes: alive when it answers PING, ready when the cluster serves every slot
    assert.deepEqual(c.livenessProbe.exec.command, ["sh", "-c", "valkey-cli -p 6379 ping | grep -q PONG"]);
    assert.match(c.readinessProbe.exec.command[2], /cluster info \| grep -q '\^cluster_state:ok'/);
    assert.equal(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage, "1Gi");
    // every node by name, ready or not
    const svc = one(objs, "Service", "-kv-cluster");
    assert.equal(svc.spec.clusterIP, "None");
    assert.equal(svc.spec.publishNotReadyAddresses, true);
    assert.equal(one(objs, "PodDisruptionBudget", "-kv-cluster").spec.maxUnavailable, 1);
    // the join: every node, one replica per primary
    const job = byKind(objs, "Job").find((j) => j.metadata.name.startsWith(`${CLUSTER}-join-`))!;
    const script: string = job.spec.template.spec.containers[0].args[0];
    assert.match(script, /seq 0 5/);
    assert.match(script, /--cluster create \$addrs --cluster-replicas 1 --cluster-yes/);
    assert.match(script, /cluster_slots_assigned:16384/, "a formed cluster is left alone");
    // LMCache's valkey adapter, seeded with every node, in cluster mode
    const nodes = [0, 1, 2, 3, 4, 5].map((i) => `${CLUSTER}-${i}.${CLUSTER}.${NAMESPACE}.svc:6379`);
    assert.deepEqual(adapterOf(objs), { type: "valkey", startup_nodes: nodes.join(","), cluster_mode: true });
    // the cluster replaces the cache server
    assert.equal(
      byKind(objs, "Deployment").filter((d) => d.metadata.name.endsWith("-cache-server")).length,
      0,
    );
    // every engine reads it alike: the router gets no tier index for it (docs/routing.md)
    const router: string[] = container(one(objs, "Deployment", "-router")).args;
    assert.ok(!router.some((a) => a.startsWith("--cache-server-")), router.join(" "));
  });

  it("cluster: the client port admits the MP servers, the join Job and the nodes; the bus port the nodes only", (t) => {
    const objs = renderOf(t, "kv-cluster-values.yaml");
    if (!objs) return;
    const np = one(objs, "NetworkPolicy", "-kv-cluster");
    const comp = (p: Any) => p.podSelector.matchLabels["app.kubernetes.io/component"];
    assert.equal(np.spec.podSelector.matchLabels["app.kubernetes.io/component"], "kv-cluster");
    const [client, bus] = np.spec.ingress;
    assert.deepEqual(client.ports, [{ port: 6379, protocol: "TCP" }]);
    assert.deepEqual(client.from.map(comp), ["lmcache", "kv-cluster-join", "kv-cluster"]);
    assert.deepEqual(bus.ports, [{ port: 16379, protocol: "TCP" }]);
    assert.deepEqual(bus.from.map(comp), ["kv-cluster"]);
    // non-root, read-only root filesystem, like every pod of the chart
    for (const o of [one(objs, "StatefulSet", "-kv-cluster"), ...byKind(objs, "Job")]) {
      const s = o.spec.template.spec;
      assert.equal(s.securityContext.runAsNonRoot, true);
      for (const c of s.containers) assert.equal(c.securityContext.readOnlyRootFilesystem, true);
    }
  });

  it("external: LMCache's valkey adapter on your nodes, with TLS, a key prefix, its capacity and the password from a Secret", (t) => {
    const objs = renderOf(t, "kv-external-values.yaml");
    if (!objs) return;
    assert.deepEqual(adapterOf(objs), {
      type: "valkey",
      startup_nodes: "kv-0.valkey.cache.svc:6379,kv-1.valkey.cache.svc:6379,kv-2.valkey.cache.svc:6379",
      cluster_mode: true,
      tls_enable: true,
      key_prefix: "switchyard",
      max_capacity_gb: 500,
      // swapped for LMCache 0.5.6, which hands glide (username, password) as (password, username)
      username: "$(LMCACHE_L2_PASSWORD)",
      password: "$(LMCACHE_L2_USERNAME)",
    });
    // Kubernetes expands $(VAR) in args from env, set from the Secret: no credential in the pod spec
    const env = envOf(container(one(objs, "DaemonSet", "-lmcache")));
    assert.deepEqual(env.get("LMCACHE_L2_PASSWORD")?.valueFrom, {
      secretKeyRef: { name: "valkey-auth", key: "password" },
    });
    assert.deepEqual(env.get("LMCACHE_L2_USERNAME")?.valueFrom, {
      secretKeyRef: { name: "valkey-auth", key: "username" },
    });
    assert.equal(byKind(objs, "StatefulSet").length, 0);
    assert.equal(byKind(objs, "Job").length, 0);
  });

  it("none: the MP servers run without an L2 and the cache server opens no RESP port", (t) => {
    const objs = renderOf(t, "lmcache-mp-values.yaml", ["--set=engines.offload.l2.type=none"]);
    if (!objs) return;
    assert.equal(adapterOf(objs), undefined);
    assert.ok(!container(one(objs, "Deployment", "-cache-server")).args.includes("--resp-port=6379"));
  });

  it("refused at render time: external without nodes, a cluster of fewer than 3 primaries, a cluster or external L2 outside the MP layout", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const cases: Array<[string, string[], RegExp]> = [
      ["lmcache-mp-values.yaml", ["--set=engines.offload.l2.type=external"], /l2\.external\.nodes/],
      ["kv-cluster-values.yaml", ["--set=engines.offload.l2.cluster.shards=2"], /shards/],
      [
        "kv-cluster-values.yaml",
        ["--set=engines.offload.lmcache.layout=connector"],
        /needs LMCache's MP layout/,
      ],
      [
        "kv-external-values.yaml",
        ["--set=engines.vllmImage.tag=v0.28.0", "--set=engines.offload.lmcache.layout=auto"],
        /needs LMCache's MP layout/,
      ],
    ];
    for (const [file, extra, why] of cases) {
      const r = renderRaw(helm, file, extra);
      assert.notEqual(r.status, 0, `${file} ${extra.join(" ")} should fail`);
      assert.match(r.stderr, why, `${file} ${extra.join(" ")}: ${r.stderr}`);
    }
  });

  it("a node's rendered server options start a real redis-server in cluster mode", async (t) => {
    const objs = renderOf(t, "kv-cluster-values.yaml");
    if (!objs) return;
    const server = findTool("redis-server");
    const cli = findTool("redis-cli");
    if (!server || !cli) return skipForTool(t, "redis-server and redis-cli not found on PATH");
    const [port, bus] = await freePorts(2);
    const dir = mkdtempSync(join(tmpdir(), "sy-kv-node-"));
    const c = one(objs, "StatefulSet", "-kv-cluster").spec.template.spec.containers[0];
    const args = (c.args as string[]).map((a, i, all) => {
      const prev = all[i - 1];
      if (prev === "--port") return String(port);
      if (prev === "--cluster-port") return String(bus);
      if (prev === "--maxmemory") return "64mb";
      return a.startsWith("/data") ? a.replace("/data", dir) : a;
    });
    const p = spawn(server, [...args, "--bind", "127.0.0.1"], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    p.stdout!.on("data", (d) => (out += d));
    p.stderr!.on("data", (d) => (out += d));
    try {
      let info = "";
      for (let i = 0; i < 100 && !/cluster_enabled:1/.test(info); i++) {
        await new Promise((r) => setTimeout(r, 100));
        info = run(cli, ["-p", String(port), "info", "cluster"]).stdout;
      }
      assert.match(info, /cluster_enabled:1/, out);
      assert.match(run(cli, ["-p", String(port), "config", "get", "maxmemory-policy"]).stdout, /allkeys-lru/);
    } finally {
      p.kill("SIGKILL");
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
