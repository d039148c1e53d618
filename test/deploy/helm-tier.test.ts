// The shared KV tier on the chart: where the engines load from the cache server as their LMCache
// remote (offload mode lmcache, connector layout), the cache server announces what it holds on its
// KV-event port and the router subscribes to it, told the engines' link and LMCache's chunk size; the
// port admits the router only. Where the engines do not load from it (no LMCache, LMCache's mp layout,
// kvEvents off) nothing of it is rendered. Simulated engines run the same tier (connector layout, at
// the router's link rate), and the rendered sim, server and router work together under the real CLI.
import assert from "node:assert/strict";
import { describe, it, type TestContext } from "node:test";
import { createConnection } from "node:net";
import { freePorts, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { container, envOf, one, render, renderRaw, RELEASE, type K8sObject } from "./chart.js";
import { requireTool } from "./tools.js";

type Rule = {
  from?: any[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  to?: any[]; // eslint-disable-line @typescript-eslint/no-explicit-any
  ports?: { port: number; protocol: string }[];
};

const SERVER = `${RELEASE}-switchyard-cache-server`;
const NETWORK = ["--set", "networkPolicy.enabled=true", "--set", "networkPolicy.egress.enabled=true"];

const argsOf = (objs: K8sObject[], nameEnd: string) =>
  container(one(objs, "Deployment", nameEnd)).args as string[];
const component = (rule: Rule, side: "from" | "to") =>
  rule[side]![0].podSelector.matchLabels["app.kubernetes.io/component"] as string;

describe("helm chart: the cache server's KV events to the router", { timeout: 300_000 }, () => {
  const renderOf = (t: TestContext, file: string | undefined, extra: string[] = []) => {
    const helm = requireTool(t, "helm");
    return helm ? render(helm, file, extra) : undefined;
  };

  it("engines on LMCache with the cache server as remote: the server publishes its chunks and the router subscribes at the engines' link rate", (t) => {
    const objs = renderOf(t, "offload-values.yaml", NETWORK);
    if (!objs) return;
    const server = argsOf(objs, "-cache-server");
    assert.ok(server.includes("--kv-events-port=5600"), server.join(" "));
    assert.ok(server.includes("--kv-events-chunk-tokens=256"));
    const svc = one(objs, "Service", "-cache-server");
    assert.ok(
      svc.spec.ports.some((p: { name: string; port: number }) => p.name === "kv-events" && p.port === 5600),
    );
    // the engines hash chunks as the router can (sha256_cbor, seeded by PYTHONHASHSEED)
    const engine = envOf(container(one(objs, "Deployment", "-engine-llama-3-1-8b")));
    assert.equal(engine.get("LMCACHE_PRE_CACHING_HASH_ALGORITHM")?.value, "sha256_cbor");
    assert.ok(engine.has("PYTHONHASHSEED"));
    const router = argsOf(objs, "-router");
    assert.ok(router.includes(`--cache-server-events=tcp://${SERVER}:5600`), router.join(" "));
    assert.ok(router.includes("--cache-server-bandwidth-gbps=100"));
    assert.ok(router.includes("--cache-server-chunk-tokens=256"));

    // the values move the port, the link and the chunk size for both sides alike
    const moved = renderOf(t, "offload-values.yaml", [
      "--set",
      "cacheServer.kvEvents.port=5700",
      "--set",
      "cacheServer.bandwidthGbps=25",
      "--set",
      "engines.offload.lmcache.chunkSize=512",
    ])!;
    assert.ok(argsOf(moved, "-cache-server").includes("--kv-events-port=5700"));
    assert.ok(argsOf(moved, "-cache-server").includes("--kv-events-chunk-tokens=512"));
    const r = argsOf(moved, "-router");
    assert.ok(r.includes(`--cache-server-events=tcp://${SERVER}:5700`));
    assert.ok(r.includes("--cache-server-bandwidth-gbps=25"));
    assert.ok(r.includes("--cache-server-chunk-tokens=512"));
  });

  it("the cache server's KV-event port admits the router only, and the router's egress reaches it", (t) => {
    const objs = renderOf(t, "offload-values.yaml", NETWORK);
    if (!objs) return;
    const admits = (rules: Rule[], port: number) =>
      rules.filter((r) => r.ports?.some((p) => p.port === port));
    const cache = one(objs, "NetworkPolicy", "-cache-server");
    const events = admits(cache.spec.ingress, 5600);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.from!.length, 1);
    assert.equal(component(events[0]!, "from"), "router");
    const out = admits(one(objs, "NetworkPolicy", "-router").spec.egress, 5600);
    assert.equal(out.length, 1);
    assert.equal(component(out[0]!, "to"), "cache-server");
  });

  it("nothing of it where the engines do not load from the cache server themselves, or kvEvents is off", (t) => {
    const cases: [string | undefined, string[]][] = [
      [undefined, []], // no LMCache
      ["lmcache-mp-values.yaml", []], // LMCache's own server per node, the cache server its L2
      ["offload-values.yaml", ["--set", "cacheServer.kvEvents.enabled=false"]],
    ];
    for (const [file, extra] of cases) {
      const objs = renderOf(t, file, [...NETWORK, ...extra]);
      if (!objs) return;
      const what = `${file ?? "defaults"} ${extra.join(" ")}`;
      assert.ok(!argsOf(objs, "-cache-server").some((a) => a.startsWith("--kv-events")), what);
      assert.ok(!argsOf(objs, "-router").some((a) => a.startsWith("--cache-server")), what);
      const engines = objs.filter((o) => o.kind === "Deployment" && o.metadata.name.includes("-engine-"));
      for (const e of engines)
        assert.equal(envOf(container(e)).has("LMCACHE_PRE_CACHING_HASH_ALGORITHM"), false, what);
      const cache = one(objs, "NetworkPolicy", "-cache-server");
      assert.ok(
        !(cache.spec.ingress as Rule[]).some((r) => r.ports?.some((p) => p.port === 5600)),
        `${what}: port 5600 opened`,
      );
    }
  });

  it("the rendered args run under the real CLIs: the cache server publishes on its KV-event port, the router takes its events, link and chunk size", async (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const [port, metricsPort, eventsPort, routerPort] = (await freePorts(4)) as [
      number,
      number,
      number,
      number,
    ];
    const objs = render(helm, "offload-values.yaml", [
      `--set=cacheServer.port=${port}`,
      `--set=cacheServer.metricsPort=${metricsPort}`,
      `--set=cacheServer.kvEvents.port=${eventsPort}`,
      "--set=cacheServer.maxMemory=64MiB",
      "--set=cacheServer.disk.enabled=false",
    ]);
    const serverArgs = argsOf(objs, "-cache-server").map((a) =>
      a === "--host=0.0.0.0" ? "--host=127.0.0.1" : a,
    );
    // the router's cache-server flags as rendered, the Service's name replaced by loopback
    const routerArgs = [
      "router",
      "--host=127.0.0.1",
      `--port=${routerPort}`,
      "--backend=http://127.0.0.1:9",
      ...argsOf(objs, "-router")
        .filter((a) => a.startsWith("--cache-server-"))
        .map((a) => a.replace(`tcp://${SERVER}:`, "tcp://127.0.0.1:")),
    ];
    assert.equal(routerArgs.length, 7, routerArgs.join(" "));
    const server = spawnCli(serverArgs);
    const router = spawnCli(routerArgs);
    try {
      await waitForHttp(`http://127.0.0.1:${metricsPort}/health`, 30_000, 200, server);
      const listening = await new Promise<boolean>((resolve) => {
        const s = createConnection({ host: "127.0.0.1", port: eventsPort }, () => {
          s.destroy();
          resolve(true);
        });
        s.once("error", () => resolve(false));
      });
      assert.ok(listening, `nothing listens on the KV-event port ${eventsPort}`);
      await waitForHttp(`http://127.0.0.1:${routerPort}/health`, 30_000, 200, router);
      const metrics = await (await fetch(`http://127.0.0.1:${routerPort}/metrics`)).text();
      assert.match(metrics, /^switchyard_routing_tier_chunks\{server="cache-server"\} 0$/m);
    } finally {
      await router.stop();
      await server.stop();
    }
  });

  it("simulated engines on LMCache: the connector layout with the cache server as remote, loading at the link the router prices; LMCache's mp layout is refused", (t) => {
    const objs = renderOf(t, "sim-values.yaml", ["--set", "engines.offload.mode=lmcache"]);
    if (!objs) return;
    const sim = argsOf(objs, "-engine-llama-3-1-8b");
    assert.equal(sim[0], "sim");
    assert.ok(sim.includes('--kv-transfer-config={"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}'));
    assert.ok(sim.includes("--lmcache-remote-bandwidth=12.5"), sim.join(" "));
    const env = envOf(container(one(objs, "Deployment", "-engine-llama-3-1-8b")));
    assert.equal(env.get("LMCACHE_REMOTE_URL")?.value, `lm://${SERVER}:65432`);
    assert.equal(env.get("LMCACHE_PRE_CACHING_HASH_ALGORITHM")?.value, "sha256_cbor");
    assert.ok(argsOf(objs, "-router").includes("--cache-server-bandwidth-gbps=100"));
    assert.ok(!objs.some((o) => o.metadata.name.endsWith("-lmcache")), "no LMCache mp server for sims");
    const helm = requireTool(t, "helm")!;
    const mp = renderRaw(helm, "sim-values.yaml", [
      ...["--set", "engines.offload.mode=lmcache", "--set", "engines.offload.lmcache.layout=mp"],
    ]);
    assert.notEqual(mp.status, 0);
    assert.match(mp.stderr, /layout=mp needs engines.mode=vllm/);
  });

  it("a rendered simulated engine, cache server and router, run under the real CLI: a long prompt's chunks reach the server and, by its events, the router", async (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const [lm, metrics, events, enginePort, kv, routerPort] = await freePorts(6);
    const objs = render(helm, "sim-values.yaml", [
      ...["--set", "engines.offload.mode=lmcache", `--set=cacheServer.port=${lm}`],
      ...[`--set=cacheServer.metricsPort=${metrics}`, `--set=cacheServer.kvEvents.port=${events}`],
      ...["--set=cacheServer.maxMemory=64MiB", "--set=cacheServer.disk.enabled=false"],
    ]);
    const local = (a: string) =>
      a === "--host=0.0.0.0" ? "--host=127.0.0.1" : a.replace(`${SERVER}:`, "127.0.0.1:");
    const serverArgs = argsOf(objs, "-cache-server").map(local);
    const engine = container(one(objs, "Deployment", "-engine-llama-3-1-8b"));
    const simArgs = (engine.args as string[])
      .map(local)
      .map((a) => (a.startsWith("--port=") ? `--port=${enginePort}` : a))
      .map((a) => a.replace("tcp://*:5557", `tcp://127.0.0.1:${kv}`));
    const simEnv: Record<string, string> = {};
    for (const [k, v] of envOf(engine)) if (typeof v.value === "string") simEnv[k] = local(v.value);
    const routerArgs = [
      ...["router", "--host=127.0.0.1", `--port=${routerPort}`, `--backend=http://127.0.0.1:${enginePort}`],
      ...["--kv-events-port", String(kv)],
      ...argsOf(objs, "-router")
        .filter((a) => a.startsWith("--cache-server-"))
        .map(local),
    ];
    const server = spawnCli(serverArgs);
    const sim = spawnCli(simArgs, simEnv);
    const router = spawnCli(routerArgs);
    try {
      await waitForHttp(`http://127.0.0.1:${metrics}/health`, 30_000, 200, server);
      await waitForHttp(`http://127.0.0.1:${routerPort}/ready`, 60_000, 200, router);
      const r = await fetch(`http://127.0.0.1:${routerPort}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "meta-llama/Llama-3.1-8B-Instruct",
          prompt: "The rivers of Europe, described in careful detail. ".repeat(120),
          max_tokens: 2,
        }),
      });
      assert.equal(r.status, 200, await r.text());
      const chunks = async () => {
        const text = await (await fetch(`http://127.0.0.1:${routerPort}/metrics`)).text();
        return Number(/^switchyard_routing_tier_chunks\{[^}]*\} (\d+)$/m.exec(text)?.[1] ?? 0);
      };
      for (let i = 0; (await chunks()) < 4; i++) {
        assert.ok(i < 300, `the router's tier index stayed below 4 chunks:\n${sim.output().slice(-2000)}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    } finally {
      await router.stop();
      await sim.stop();
      await server.stop();
    }
  });

  it("the values schema refuses a link of 0 Gbit/s", (t) => {
    const helm = requireTool(t, "helm");
    if (!helm) return;
    const r = renderRaw(helm, "offload-values.yaml", ["--set", "cacheServer.bandwidthGbps=0"]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /bandwidthGbps/);
  });
});
