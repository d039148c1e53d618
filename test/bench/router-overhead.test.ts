// The routing-cost benchmark (`npm run bench -- router/overhead`, bench/router/overhead-at-rate.ts): a
// tiny run writes one row per policy, rate and prompt size with the figures the docs quote, and a knee
// per policy and prompt size; the knee rule itself on made-up rows. Timings are never asserted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { knees, type Run } from "../../bench/support/rate-knee.js";
import { repoRoot } from "../deploy/tools.js";

test("router/overhead --json writes each policy's added latency and router cores at a rate, and a knee per policy and prompt size", async () => {
  const dir = mkdtempSync(join(tmpdir(), "router-overhead-"));
  try {
    const file = join(dir, "out.json");
    const args = [
      join(repoRoot(), "dist/bench/router/overhead.js"),
      ...["--rates", "20", "--prompt-tokens", "256", "--policies", "round-robin,predictive"],
      ...["--duration", "0.5", "--warmup", "0.25", "--engines", "2", "--groups", "2", "--json", file],
    ];
    const child = spawn(process.execPath, args, {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" },
    });
    let stderr = "";
    child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
    // a hang guard, not a timing: the run takes seconds
    const guard = setTimeout(() => child.kill("SIGKILL"), 180_000);
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
    clearTimeout(guard);
    assert.equal(code, 0, stderr);
    const out = JSON.parse(readFileSync(file, "utf8")) as { runs: Run[]; knee: unknown[] };
    assert.deepEqual(
      out.runs.map((r) => [r.policy, r.rate, r.prompt_tokens]),
      [
        ["round-robin", 20, 256],
        ["predictive", 20, 256],
      ],
    );
    for (const r of out.runs) {
      for (const p of ["p50", "p95", "p99"] as const)
        assert.equal(typeof r.added_ms[p], "number", `${r.policy} added_ms.${p}`);
      assert.ok(r.router_cores === null || r.router_cores >= 0, `${r.policy} router_cores`);
      // the engines stamped every answer, through the router too: the legs outside the engine are known
      assert.ok(r.router_outside_ms.p50 > 0 && r.direct_outside_ms.p50 > 0, `${r.policy} outside`);
      assert.equal(typeof r.cpu_us_per_req.client, "number", `${r.policy} client CPU`);
      assert.equal(r.errors, 0, `${r.policy} errors`);
    }
    // the default policy routed from the engines' KV events: it predicted some of the shared prefixes cached
    assert.ok((out.runs[1]!.predicted_cached_share ?? 0) > 0, "predictive found the shared prefixes");
    assert.deepEqual(
      out.knee.map((k) => {
        const { policy, prompt_tokens, rate, reason } = k as Record<string, unknown>;
        return [policy, prompt_tokens, rate === null || typeof rate === "number", typeof reason];
      }),
      [
        ["round-robin", 256, true, "string"],
        ["predictive", 256, true, "string"],
      ],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the knee is the first rate where the router's CPU nears the machine's cores, it falls behind the rate, or its added p95 breaks away", () => {
  const run = (rate: number, p95: number, cores: number, achieved = rate): Run => ({
    policy: "predictive",
    rate,
    prompt_tokens: 4096,
    added_ms: { p50: p95 / 2, p95, p99: p95 * 2 },
    router_cores: cores,
    router_cpu_ms_per_req: (cores * 1000) / rate,
    cpu_us_per_req: { router: (cores * 1e6) / rate, client: 100, engines: 100 },
    direct_cpu_us_per_req: { client: 100, engines: 100 },
    added_e2e_ms: { p50: p95 / 2, p95, p99: p95 * 2 },
    router_ms: { p50: 0, p95: 0, p99: 0 },
    direct_ms: { p50: 0, p95: 0, p99: 0 },
    router_outside_ms: { p50: 0, p95: 0, p99: 0 },
    direct_outside_ms: { p50: 0, p95: 0, p99: 0 },
    router_inbound_ms: { p50: 0, p95: 0, p99: 0 },
    direct_inbound_ms: { p50: 0, p95: 0, p99: 0 },
    achieved_rps: achieved,
    errors: 0,
    client_lag_p99_ms: 0,
    predicted_cached_share: 0.8,
    long_prompts_on_loop_share: 0,
    direct_achieved_rps: rate,
    harness_bound: false,
  });
  const at = (rows: Run[]) => knees(rows, 2)[0]!;
  assert.equal(at([run(100, 1, 0.1), run(250, 1.5, 0.3), run(500, 2, 0.6), run(1000, 3, 1.2)]).rate, null);
  assert.equal(at([run(100, 1, 0.1), run(250, 1.5, 0.3), run(500, 9, 0.6)]).rate, 500);
  assert.equal(at([run(100, 1, 0.1), run(250, 1.5, 1.85)]).rate, 250);
  assert.equal(at([run(100, 1, 0.1), run(250, 1.5, 0.3, 200)]).rate, 250);
  // where the direct run fell behind, the router's knee is not known, only that it is above the rates before
  const bound = { ...run(1000, 50, 1.9), harness_bound: true };
  assert.equal(at([run(100, 1, 0.1), run(500, 2, 0.6), bound]).rate, null);
  // rows given out of order are read by rate
  assert.equal(at([run(500, 9, 0.6), run(100, 1, 0.1)]).rate, 500);
});
