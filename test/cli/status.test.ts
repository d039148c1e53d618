// `switchyard status` and `switchyard smoke` against what `npm start` runs (`switchyard up --engines 2`):
// status lists both engines with live figures as text and as JSON, smoke passes against the stack and
// fails fast and clearly against a dead address. The report itself is a pure function of two samples,
// tested here on hand-written ones: rates, shares, window quantiles and every warning.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cliCommand, freePort, freeUpPorts, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { buildReport, histogramQuantile, type StatusSample } from "../../src/ops/fleet-status.js";
import { parseSamples } from "../../src/protocol/prometheus-text.js";
import type { StatusReport } from "../../src/ops/fleet-status.js";
import { renderStatus } from "../../src/ops/status-text.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

function cli(args: string[]): { status: number | null; stdout: string; stderr: string } {
  const { cmd, args: pre } = cliCommand();
  const r = spawnSync(cmd, [...pre, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, SWITCHYARD_LOG_FORMAT: "json" },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("status lists both engines of `up --engines 2` with live figures; smoke passes there and fails on a dead port", async () => {
  const port = await freePort();
  const { engineBase, kvBase } = await freeUpPorts(2);
  const stack = spawnCli(
    ["up", "--engines", "2", "--port", String(port), "--engine-base-port", String(engineBase)].concat([
      "--kv-events-base-port",
      String(kvBase),
      "--model",
      MODEL,
      "--time-scale",
      "0.2",
    ]),
  );
  const router = `http://127.0.0.1:${port}`;
  try {
    await waitForHttp(`${router}/ready`, 60_000);
    const smoke = cli(["smoke", router]);
    assert.equal(smoke.status, 0, smoke.stdout + smoke.stderr);
    assert.match(smoke.stdout, /^PASS smoke .*models ok.*chat ok.*stream ok.*error ok \(404/);
    assert.equal(smoke.stdout.trim().split("\n").length, 1, "one line");

    // traffic while status samples, so that rates and shares are live
    const load = Array.from({ length: 12 }, (_, i) =>
      fetch(`${router}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, prompt: `status test ${i} `.repeat(20), max_tokens: 16 }),
      }).then((r) => r.arrayBuffer()),
    );
    await Promise.all(load.slice(0, 4));
    const json = cli(["status", "--router", router, "--format", "json", "--interval", "0.5"]);
    await Promise.all(load);
    assert.equal(json.status, 0, json.stderr);
    const report = JSON.parse(json.stdout) as StatusReport;
    assert.deepEqual(
      report.engines.map((e) => e.url).sort(),
      [engineBase, engineBase + 1].map((p) => `http://127.0.0.1:${p}`),
    );
    for (const e of report.engines) {
      assert.equal(e.healthy, true);
      assert.deepEqual(e.models, [MODEL]);
      assert.equal(typeof e.kvUsage, "number");
      // scraped: an age is given (how recent is a timing, not asserted)
      assert.ok(e.scrapeAgeMs !== null && e.scrapeAgeMs >= 0, `scraped ${e.scrapeAgeMs} ms ago`);
    }
    // shares are of routed requests: they add up to the whole
    const shares = report.engines.map((e) => e.routingShare ?? 0);
    assert.ok(Math.abs(shares.reduce((a, b) => a + b, 0) - 1) < 1e-9, `shares ${shares.join(", ")}`);
    assert.ok(report.routerStats.requestsTotal >= 4);
    assert.equal(report.summary.healthy, 2);

    const text = cli(["status", "--router", router, "--interval", "0"]);
    assert.equal(text.status, 0, text.stderr);
    assert.match(text.stdout, /2 of 2 engines in rotation/);
    for (const p of [engineBase, engineBase + 1])
      assert.match(text.stdout, new RegExp(`127\\.0\\.0\\.1:${p} +${MODEL}`));
    assert.match(text.stdout, /TTFT p50 \d/);
  } finally {
    await stack.stop("SIGINT");
  }
  const dead = `http://127.0.0.1:${engineBase}`; // stopped with the stack
  const fail = cli(["smoke", dead]);
  assert.equal(fail.status, 1);
  assert.match(
    fail.stdout,
    /^FAIL smoke http:\/\/127\.0\.0\.1:\d+ after [\d.]+ s: models: cannot connect \(ECONNREFUSED\)/,
  );
  const down = cli(["status", "--router", dead]);
  assert.equal(down.status, 1);
  assert.match(down.stderr, /cannot reach the router at .*ECONNREFUSED/);
  // --watch outlives an outage: it reports each failed sample and keeps trying until Ctrl-C
  const watch = spawnCli(["status", "--router", dead, "--watch", "--interval", "0.3", "--format", "json"]);
  try {
    const deadline = Date.now() + 30_000; // timing-ok: a hang guard, polled
    while (
      watch
        .output()
        .split("\n")
        .filter((l) => l.includes('"error"')).length < 2 &&
      Date.now() < deadline
    )
      await new Promise((r) => setTimeout(r, 100));
  } finally {
    assert.equal(await watch.stop("SIGINT"), 0);
  }
  const lines = watch
    .output()
    .split("\n")
    .filter((l) => l.startsWith('{"time"'));
  assert.ok(lines.length >= 2, watch.output());
  assert.match(JSON.parse(lines[0]!).error as string, /cannot reach the router/);
});

function sample(at: number, engines: StatusSample["engines"], metrics: string): StatusSample {
  return { at, engines, metrics: parseSamples(metrics) };
}

const E1 = "http://10.0.0.1:8000";
const E2 = "http://10.0.0.2:8000";

function page(n1: number, n2: number, fiveXx: number, buckets: [number, number, number]): string {
  return [
    `switchyard_requests_total{model="m",engine="${E1}",status="200",policy="hybrid"} ${n1}`,
    `switchyard_requests_total{model="m",engine="${E2}",status="200",policy="hybrid"} ${n2}`,
    `switchyard_requests_total{model="m",engine="${E2}",status="503",policy="hybrid"} ${fiveXx}`,
    `switchyard_requests_total{model="m",engine="none",status="404",policy="hybrid"} 5`,
    `switchyard_e2e_request_latency_seconds_bucket{model="m",le="0.1"} ${buckets[0]}`,
    `switchyard_e2e_request_latency_seconds_bucket{model="m",le="1"} ${buckets[1]}`,
    `switchyard_e2e_request_latency_seconds_bucket{model="m",le="+Inf"} ${buckets[2]}`,
    `switchyard_engine_ejections_total{engine="${E2}",reason="passive"} 2`,
    `switchyard_routing_engine_kv_mode{engine="${E1}"} 1`,
    `switchyard_routing_engine_kv_mode{engine="${E2}"} 0`,
    `switchyard_routing_kv_fallback{engine="${E2}",reason="hash-algo-builtin"} 1`,
    `switchyard_routing_hit_mismatch{engine="${E1}"} 1`,
    `switchyard_requests_in_flight 3`,
  ].join("\n");
}

test("the report: rates, routing shares and quantiles over the window, hit rates, and every warning", () => {
  const rows = (hits: number, queries: number) => [
    {
      url: E1,
      healthy: true,
      state: "healthy",
      models: [{ id: "m" }],
      kvUsage: 0.95,
      prefixCacheHits: hits,
      prefixCacheQueries: queries,
      scrapeAgeMs: 500,
    },
    {
      url: E2,
      healthy: false,
      state: "ejected",
      lastError: "health: HTTP 503",
      kvUsage: 0.2,
      scrapeAgeMs: 60_000,
    },
  ];
  const before = sample(0, rows(100, 1000), page(10, 10, 0, [0, 0, 0]));
  const after = sample(2000, rows(400, 1400), page(40, 20, 10, [10, 30, 40]));
  const r = buildReport("http://router", after, before);
  assert.equal(r.routerStats.windowS, 2);
  // 30 + 10 + 10 answered in the window (the 404 did not move): 50 in 2 s
  assert.equal(r.routerStats.requestsPerS, 25);
  assert.equal(r.routerStats.errorsPerS, 5);
  // 40 requests in the window: p50 is the 20th, within (0.1, 1]: 0.1 + 0.9 × 10/20 s
  assert.equal(r.routerStats.latencySpan, "window");
  assert.ok(Math.abs(r.routerStats.e2eP50Ms! - 550) < 1e-9, String(r.routerStats.e2eP50Ms));
  const [a, b] = r.engines;
  // routed in the window: E1 30, E2 10 + 10
  assert.equal(a!.routingShare, 0.6);
  assert.equal(b!.routingShare, 0.4);
  assert.equal(a!.prefixHitRate, 0.75); // 300 of 400 in the window
  assert.equal(b!.prefixHitRate, null);
  assert.equal(a!.routingMode, "kv");
  assert.equal(b!.routingMode, "prefix");
  assert.equal(b!.kvFallback, "hash-algo-builtin");
  assert.equal(b!.ejections, 2);
  assert.deepEqual(r.warnings.map((w) => `${w.engine ?? "-"} ${w.kind}`).sort(), [
    `- errors`,
    `${E1} hit-mismatch`,
    `${E1} kv-pressure`,
    `${E2} kv-fallback`,
    `${E2} stale-scrape`,
    `${E2} unhealthy`,
  ]);
  // one sample: totals, no rates, no window
  const once = buildReport("http://router", after, null);
  assert.equal(once.routerStats.requestsPerS, null);
  assert.equal(once.routerStats.latencySpan, "total");
  assert.equal(once.engines[0]!.prefixHitRate, 400 / 1400);
});

test("an engine that is starting or has no KV events yet is routed by prefix without a warning", () => {
  const s = sample(
    0,
    [{ url: E1, healthy: true, state: "healthy", kvUsage: 0 }],
    `switchyard_routing_kv_fallback{engine="${E1}",reason="no-events-yet"} 1\nswitchyard_routing_engine_kv_mode{engine="${E1}"} 0`,
  );
  const r = buildReport("http://router", s, null);
  assert.equal(r.engines[0]!.kvFallback, "no-events-yet");
  assert.deepEqual(r.warnings, []);
});

test("status shows the router's autoscaling decision per pool with its reason, and nothing when it runs none", () => {
  const s = sample(0, [{ url: E1, healthy: true, state: "healthy", kvUsage: 0 }], "");
  const plain = buildReport("http://router", s, null);
  assert.equal(plain.autoscale, null);
  assert.doesNotMatch(renderStatus(plain), /autoscaling/);
  const reason =
    "up: forecast 4.80/s (trend +47.96/s per min) + backlog 0 over 3.78/s per replica at the SLO";
  s.autoscale = {
    slo: { ttftP90Ms: 2000, tpotP90Ms: 100 },
    minReplicas: 1,
    maxReplicas: 4,
    pools: [{ model: MODEL, role: "mixed", current: 1, desired: 2, reason }],
  };
  const r = buildReport("http://router", s, null);
  assert.deepEqual(r.autoscale, s.autoscale);
  const text = renderStatus(r);
  assert.match(text, /autoscaling to TTFT p90 2\.00 s, TPOT p90 100 ms, 1-4 replicas per pool:/);
  assert.ok(text.includes(`${MODEL} (mixed): 1 -> 2 replicas: ${reason}`), text);
});

test("histogram quantiles interpolate within a bucket as Prometheus does", () => {
  const b = new Map([
    [0.1, 5],
    [1, 15],
    [Infinity, 20],
  ]);
  assert.ok(Math.abs(histogramQuantile(0.5, b)! - (0.1 + 0.9 * 0.5)) < 1e-12);
  assert.equal(histogramQuantile(0.99, b), 1); // in +Inf: the highest finite bound
  assert.equal(histogramQuantile(0.5, new Map([[Infinity, 0]])), null);
});
