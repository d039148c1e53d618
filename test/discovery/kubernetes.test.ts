// Kubernetes discovery against a local fake API server speaking real list/watch JSON: the router's
// engine set follows pods turning ready/unready, terminating and deleted, across dropped watch
// connections, a 410 expiry, a watch outage that hides a DELETE (and an ADD), and periodic resync.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { engineOfPod, type Pod } from "../../src/discovery/kubernetes.js";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";
import { startFakeApiServer } from "./fake-apiserver.js";
import type { RunningRouter } from "../../src/router/index.js";

function engineSet(r: RunningRouter): string[] {
  return [...r.router.registry.engines.values()]
    .filter((e) => !e.draining)
    .map((e) => e.url)
    .sort();
}

async function expectSet(r: RunningRouter, want: string[], what: string): Promise<void> {
  const sorted = [...want].sort();
  try {
    await waitUntil(() => JSON.stringify(engineSet(r)) === JSON.stringify(sorted), 5000, what);
  } catch {
    assert.deepEqual(engineSet(r), sorted, what);
  }
}

test("engineOfPod: Ready and not terminating only; port from annotation, then the http container port", () => {
  const pod = (over: Partial<Pod> = {}, ready = true): Pod => ({
    metadata: {
      name: "e-0",
      namespace: "ns",
      labels: { "switchyard.dev/model": "llama-8b", "switchyard.dev/role": "decode" },
      annotations: {
        "switchyard.dev/port": "8001",
        "switchyard.dev/kv-events-port": "5557",
        "switchyard.dev/served-model-name": "meta-llama/Llama-3.1-8B-Instruct",
      },
      ...over.metadata,
    },
    spec: { containers: [{ ports: [{ name: "http", containerPort: 9000 }] }] },
    status: { podIP: "10.1.2.3", conditions: [{ type: "Ready", status: ready ? "True" : "False" }] },
  });
  assert.deepEqual(engineOfPod(pod()), {
    url: "http://10.1.2.3:8001",
    weight: 1,
    kvEvents: { endpoint: "tcp://10.1.2.3:5557" },
    model: "llama-8b",
    servedModelName: "meta-llama/Llama-3.1-8B-Instruct",
    role: "decode",
    source: "pod ns/e-0",
  });
  assert.equal(engineOfPod(pod({}, false)), undefined, "not Ready");
  assert.equal(
    engineOfPod(pod({ metadata: { deletionTimestamp: "2026-01-01T00:00:00Z" } })),
    undefined,
    "terminating",
  );
  const noAnn = pod({ metadata: { annotations: {} } });
  assert.equal(engineOfPod(noAnn)?.url, "http://10.1.2.3:9000", "container port named http");
  assert.equal(engineOfPod(noAnn)?.kvEvents, undefined);
  const bare = { ...noAnn, spec: {} };
  assert.equal(engineOfPod(bare, 8000)?.url, "http://10.1.2.3:8000", "default port");
  const v6 = { ...bare, status: { ...bare.status, podIP: "fd00::7" } };
  assert.equal(engineOfPod(v6, 8000)?.url, "http://[fd00::7]:8000");
  assert.equal(engineOfPod({ ...bare, status: { conditions: bare.status!.conditions } }), undefined, "no IP");
});

test("the registry's engine set follows pods through watch events, drops, a 410, a hidden DELETE and resync", async (t) => {
  const api = await startFakeApiServer();
  const dir = mkdtempSync(join(tmpdir(), "k8s-disc-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const tokenFile = join(dir, "token");
  writeFileSync(tokenFile, api.token);
  const e1 = await startFakeEngine({ models: ["fake/m"] });
  const e2 = await startFakeEngine({ models: ["fake/m"] });
  const url = (ip: string, port: number) => `http://${ip}:${port}`;
  const A = url("127.0.0.1", e1.port);
  const B = url("127.0.0.1", e2.port);
  // pods without an engine behind them: the registry still lists them (health keeps them out of rotation)
  const C = url("127.0.0.3", 1);
  const D = url("127.0.0.4", 1);
  const E = url("127.0.0.5", 1);
  const F = url("127.0.0.6", 1);
  api.add({ name: "a", ip: "127.0.0.1", port: e1.port, labels: { "switchyard.dev/role": "mixed" } });
  api.add({ name: "b", ip: "127.0.0.1", port: e2.port });
  api.add({ name: "c", ip: "127.0.0.3", port: 1, ready: false });
  // another release's engine: the selector keeps it out
  api.add({ name: "other", ip: "127.0.0.9", port: 1, labels: { "app.kubernetes.io/instance": "other" } });
  let router: RunningRouter | undefined;
  try {
    router = await routerFor([], {
      discovery: {
        mode: "kubernetes",
        kubernetes: {
          apiUrl: api.url,
          tokenFile,
          namespace: api.namespace,
          selector: "switchyard.dev/engine=true,app.kubernetes.io/instance=test",
          resyncInterval: 1500,
        },
      },
    });
    await expectSet(router, [A, B], "initial list: ready pods of this release");
    assert.equal(router.router.registry.engines.get(A)!.spec.role, "mixed");
    const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 2 });
    assert.equal(r.status, 200, "a discovered engine answers through the router");
    await r.arrayBuffer();
    await waitUntil(() => api.openWatches() === 1, 3000, "watch open");

    api.add({ name: "d", ip: "127.0.0.4", port: 1 });
    await expectSet(router, [A, B, D], "ADDED");
    api.setReady("c", true);
    await expectSet(router, [A, B, C, D], "MODIFIED: c became ready");
    api.setReady("b", false);
    await expectSet(router, [A, C, D], "MODIFIED: b unready");
    api.terminate("d");
    await expectSet(router, [A, C], "MODIFIED: d terminating (deletionTimestamp)");
    api.delete("d");
    api.setReady("b", true);
    await expectSet(router, [A, B, C], "DELETED d; b ready again");

    // a dropped watch connection: the router re-lists and watches again
    let lists = api.seen.lists;
    api.dropWatches();
    await waitUntil(() => api.seen.lists > lists && api.openWatches() === 1, 5000, "re-list + re-watch");
    api.add({ name: "e", ip: "127.0.0.5", port: 1 });
    await expectSet(router, [A, B, C, E], "events flow on the new watch");

    // the watch is down while c is deleted and f appears, with no event left to replay
    api.refuseWatches = true;
    api.dropWatches();
    api.delete("c", { silent: true });
    api.add({ name: "f", ip: "127.0.0.6", port: 1 }, { silent: true });
    await new Promise((res) => setTimeout(res, 300));
    api.refuseWatches = false;
    await expectSet(
      router,
      [A, B, E, F],
      "a DELETE and an ADD missed during the outage are caught by the re-list",
    );

    // 410 Gone on the next watch: re-list, then watch again
    lists = api.seen.lists;
    api.expireNextWatch();
    api.dropWatches();
    api.delete("e", { silent: true });
    await expectSet(router, [A, B, F], "after the 410 expiry");
    await waitUntil(() => api.seen.lists >= lists + 2 && api.openWatches() === 1, 5000, "watch after 410");

    // the watch stays up but misses an event: the periodic resync finds it
    const watches = api.seen.watches;
    api.delete("f", { silent: true });
    await expectSet(router, [A, B], "periodic re-list");
    // the re-list updates the set before the new watch request reaches the API server: wait for it
    await waitUntil(() => api.seen.watches > watches, 5000, "resync restarted the watch");
    assert.equal(api.seen.unauthorized, 0, "the token file's bearer token was sent");

    // a removed engine leaves the registry entirely once idle (routing state cleared)
    api.delete("b");
    await expectSet(router, [A], "DELETED b");
    await waitUntil(() => !router!.router.registry.engines.has(B), 3000, "b gone from the registry");
  } finally {
    await router?.close();
    await api.close();
    await e1.close();
    await e2.close();
  }
});
