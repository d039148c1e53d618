// The capacity search of the agent benchmark (bench/support/capacity.ts, bench/routing/agentic.ts): the
// highest load a policy holds within an SLO, found by doubling then bisection, judged on pooled TTFT
// percentiles; on a small fleet in virtual time; and the benchmark's --json capacity rows, from a tiny run.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { highestLoadHeld, judge, type CapacitySlo } from "../../bench/support/capacity.js";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { simulateFleet } from "../../src/fleet/fleet.js";
import { repoRoot } from "../deploy/tools.js";
import { smallAgentic } from "../helpers/agentic.js";

const search = { start: 0.5, min: 1 / 16, max: 4, resolution: 1 / 32 };

test("the capacity search finds the highest load a monotone SLO holds, to its resolution, trying multiples of it", () => {
  const found = highestLoadHeld((load) => load <= 1.37, search);
  assert.equal(found.load, 43 / 32);
  assert.equal(found.missed, 44 / 32);
  for (const t of found.tried) {
    assert.equal(t.held, t.load <= 1.37);
    assert.equal(Number.isInteger(t.load * 32), true, `${t.load} is a multiple of 1/32`);
  }
  // doubling from 50% (50, 100, 200%), then bisection between 100% and 200% down to 1/32
  assert.deepEqual(
    found.tried.slice(0, 3).map((t) => t.load),
    [0.5, 1, 2],
  );
  assert.equal(found.tried.length, 3 + 5);
  // below the start: halving until a load holds
  const low = highestLoadHeld((load) => load <= 0.2, search);
  assert.equal(low.load, 6 / 32);
  assert.equal(low.missed, 7 / 32);
});

test("a policy that holds no load from the lowest answers 0, and one that holds the ceiling answers it", () => {
  const none = highestLoadHeld(() => false, search);
  assert.equal(none.load, 0);
  assert.equal(none.missed, 1 / 16);
  assert.deepEqual(
    none.tried.map((t) => t.load),
    [0.5, 0.25, 0.125, 0.0625],
  );
  const all = highestLoadHeld(() => true, search);
  assert.equal(all.load, 4);
  assert.equal(all.missed, Infinity);
  assert.throws(() => highestLoadHeld(() => true, { ...search, start: 8 }), /min ≤ start ≤ max/);
});

test("a load holds when both pooled p90s are within their bounds, and a failed request counts as over them", () => {
  const slo: CapacitySlo = { ttftP90Ms: 2000, resumedTtftP90Ms: 1000 };
  const ttfts = Array.from({ length: 20 }, (_, i) => 100 * i); // p90 1,710 ms
  assert.equal(judge({ ttfts, resumedTtfts: [500, 900] }, slo).held, true);
  assert.equal(judge({ ttfts, resumedTtfts: [500, 1500] }, slo).held, false);
  assert.equal(judge({ ttfts: [...ttfts, 5000, 5000, 5000], resumedTtfts: [] }, slo).held, false);
  // three failed requests among ten: the p90 falls among them, Infinity rather than NaN
  const failed = judge(
    { ttfts: [...ttfts.slice(0, 7), Infinity, Infinity, Infinity], resumedTtfts: [] },
    slo,
  );
  assert.equal(failed.held, false);
  assert.equal(failed.ttftP90Ms, Infinity);
});

test("on a small fleet in virtual time, the load found holds the SLO, the next one up misses it, and keeping sessions' contexts holds more", () => {
  const engine = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("l4"), {
    maxModelLen: 16_384,
    blockHashAlgo: "fast",
  });
  const slo: CapacitySlo = { ttftP90Ms: 2000, resumedTtftP90Ms: 1000 };
  // a load unit of 1 req/s; enough sessions that the client always has a turn to send
  const point = (load: number, policy: "round-robin" | "predictive" = "round-robin") => {
    const res = simulateFleet({
      engine,
      engines: 2,
      policy,
      sessionKey: "router",
      scrapeIntervalS: 1,
      sharedServer: null,
      workload: smallAgentic({ sessions: 60, turns: 3, pauseMedianS: 0.5, pauseMaxS: 1 }),
      qps: load,
      arrival: "poisson",
      concurrency: Infinity,
      maxRequests: Infinity,
      durationS: Infinity,
      seed: 1,
      recordItl: false,
    });
    const ttfts = res.records.map((r) => (r.ok ? r.ttft : Infinity));
    return judge({ ttfts, resumedTtfts: res.records.filter((r) => r.resumed).map((r) => r.ttft) }, slo);
  };
  const found = highestLoadHeld((load) => point(load).held, {
    start: 1,
    min: 1 / 8,
    max: 32,
    resolution: 1 / 8,
  });
  assert.ok(found.load > 0 && Number.isFinite(found.missed), JSON.stringify(found.tried));
  assert.equal(point(found.load).held, true);
  assert.equal(point(found.missed).held, false);
  assert.ok(found.missed - found.load <= 1 / 8);
  // predictive sends a resumed turn where its context is (round-robin: 2 req/s, predictive: 3)
  const kept = highestLoadHeld((load) => point(load, "predictive").held, {
    start: 1,
    min: 1 / 8,
    max: 32,
    resolution: 1 / 4,
  });
  assert.ok(kept.load > found.load, `predictive ${kept.load}, round-robin ${found.load}`);
});

test("the agent benchmark writes each policy's capacity as {policy, baseline, load} under capacity", () => {
  const dir = mkdtempSync(join(tmpdir(), "agentic-capacity-"));
  try {
    const file = join(dir, "out.json");
    const res = spawnSync(
      process.execPath,
      [
        join(repoRoot(), "dist/bench/routing/agentic.js"),
        "--preset",
        "b2b",
        "--sessions",
        "6",
        "--seeds",
        "1",
        "--policies",
        "predictive,session",
        "--tiered",
        "--resolution",
        "0.25",
        "--max-load",
        "2",
        "--json",
        file,
      ],
      { encoding: "utf8", env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" } },
    );
    assert.equal(res.status, 0, res.stderr);
    const out = JSON.parse(readFileSync(file, "utf8")) as {
      capacity: { policy: string; baseline: boolean; load: number; tried: unknown[] }[];
      tiered: unknown;
    };
    assert.deepEqual(
      out.capacity.map((c) => [c.policy, c.baseline]),
      [
        ["predictive", false],
        ["session", true],
      ],
    );
    for (const c of out.capacity) {
      assert.equal(typeof c.load, "number");
      assert.ok(c.load >= 0 && c.load <= 2, `${c.policy}: ${c.load}`);
      assert.ok(c.tried.length > 0);
    }
    assert.notEqual(out.tiered, null);
    assert.match(res.stdout, /\| predictive \| \d+(\.\d+)?% \|/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
