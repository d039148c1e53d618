// The router's SLO autoscaling decision, exported: with `autoscaling.enabled` the router decides on a
// timer per model and role and answers GET /autoscale with each pool's count and reason, and /metrics
// with switchyard_autoscale_desired_replicas; off, it decides nothing. Waits are hang guards.
import { after, describe, it } from "node:test";
import assert from "node:assert/strict";
import { routerFor, waitUntil } from "../../../bench/support/router.js";
import { startFakeEngine, type FakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import type { RunningRouter } from "../../../src/router/index.js";
import { poolLabel } from "../../../src/router/autoscale/loop.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

interface Report {
  enabled: boolean;
  decidedAt: number | null;
  pools: { model: string; role: string; current: number; desired: number; reason: string }[];
}

describe("router autoscaling decision", { timeout: 120_000 }, () => {
  const closers: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of closers.reverse()) await c();
  });
  const start = async (engine: FakeEngine, autoscaling: Record<string, unknown>): Promise<RunningRouter> => {
    const r = await routerFor([{ url: engine.url }], { autoscaling } as never);
    closers.push(() => r.close(0));
    return r;
  };

  it("an engine with a deep queue: the pool is asked for more replicas, with the reason, on /autoscale and /metrics", async () => {
    const engine = await startFakeEngine({ models: [MODEL], waiting: 60, running: 8 });
    closers.push(() => engine.close());
    const r = await start(engine, { enabled: true, interval: "200ms", startup: "1s", maxReplicas: 5 });
    let report: Report | undefined;
    await waitUntil(
      async () => {
        report = (await (await fetch(`${r.url}/autoscale`)).json()) as Report;
        return report.pools.length === 1 && report.pools[0]!.desired > 1;
      },
      30_000,
      "a decision to scale up",
    );
    const pool = report!.pools[0]!;
    assert.equal(report!.enabled, true);
    assert.equal(pool.model, MODEL);
    assert.equal(pool.role, "mixed");
    assert.equal(pool.current, 1);
    assert.ok(pool.desired <= 5, "within maxReplicas");
    assert.match(pool.reason, /^up: .*backlog 60/);
    // the gauge follows each decision: read until it shows one to scale up (a scrape the loaded
    // machine delayed may leave one period without the queue)
    let metrics = "";
    let line: string[] | undefined;
    await waitUntil(
      async () => {
        metrics = await (await fetch(`${r.url}/metrics`)).text();
        line = metrics
          .split("\n")
          .find((l) => l.startsWith("switchyard_autoscale_desired_replicas{"))
          ?.split(" ");
        return line !== undefined && Number(line[1]) > 1;
      },
      30_000,
      "the desired replicas gauge above 1",
    );
    assert.ok(line, metrics.slice(0, 500));
    assert.ok(
      line[0]!.includes(`model="${MODEL}"`) && line[0]!.includes(`pool="${poolLabel(MODEL, "mixed")}"`),
    );
    assert.ok(Number(line[1]) > 1);
    assert.match(metrics, /switchyard_autoscale_current_replicas\{[^}]*\} 1\n/);
  });

  it("off (the default), the router decides nothing and says so", async () => {
    const engine = await startFakeEngine({ models: [MODEL] });
    closers.push(() => engine.close());
    const r = await start(engine, {});
    const report = (await (await fetch(`${r.url}/autoscale`)).json()) as Report;
    assert.equal(report.enabled, false);
    assert.deepEqual(report.pools, []);
    assert.doesNotMatch(
      await (await fetch(`${r.url}/metrics`)).text(),
      /^switchyard_autoscale_desired_replicas\{/m,
    );
  });

  it("a pool label is a Kubernetes label value made of the model and the role", () => {
    assert.equal(poolLabel(MODEL, "mixed"), "meta-llama-llama-3.1-8b-instruct-mixed");
    assert.equal(poolLabel("Org/Model_X", "prefill"), "org-model_x-prefill");
    assert.ok(poolLabel("a".repeat(80), "decode").length <= 63);
  });
});
