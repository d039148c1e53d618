// The real `switchyard bench` binary against the independent mini server: result files, request
// shapes, sessions, calibration, failures, timing fidelity, and compare.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mulberry32 } from "../../src/random/rng.js";
import { cliCommand } from "../../bench/support/cli.js";
import { startMini, type MiniOptions } from "../../bench/support/fakes/mini-server.js";
import type { Json } from "../helpers/json.js";

const dir = mkdtempSync(join(tmpdir(), "bench-test-"));
test.after(() => rmSync(dir, { recursive: true, force: true }));

async function bench(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { cmd, args: pre } = cliCommand();
  const child = spawn(cmd, [...pre, "bench", ...args], {
    env: { ...process.env, SWITCHYARD_LOG_FORMAT: "json" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
  child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), 40_000);
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

async function withMini<T>(
  o: MiniOptions,
  fn: (url: string, mini: Awaited<ReturnType<typeof startMini>>) => Promise<T>,
) {
  const mini = await startMini(o);
  try {
    return await fn(mini.url, mini);
  } finally {
    await mini.close();
  }
}

const json = (p: string) => JSON.parse(readFileSync(p, "utf8")) as Record<string, Json>;

/** A quiet, uncalibrated run against `url` that must succeed; its JSON result. */
async function benchJson(url: string, name: string, args: string[]): Promise<ReturnType<typeof json>> {
  const out = join(dir, `${name}.json`);
  const r = await bench(["--base-url", url, "--out", out, "--no-progress", "--no-calibrate", ...args]);
  assert.equal(r.code, 0, r.stderr);
  return json(out);
}

test("random workload: vllm field names, files, request shape, calibration, errors by kind", async () => {
  await withMini(
    { tokenize: true, tokensPerWord: 2, failEvery: { n: 5, status: 500 } },
    async (url, mini) => {
      const out = join(dir, "r.json");
      const csv = join(dir, "r.csv");
      const plots = join(dir, "plots");
      const r = await bench([
        "--base-url",
        url,
        "--num-requests",
        "20",
        "--input-len",
        "64",
        "--output-len",
        "5",
        "--qps",
        "200",
        "--arrival",
        "constant",
        "--seed",
        "3",
        "--slo",
        "ttft:10000",
        "--out",
        out,
        "--csv",
        csv,
        "--plot-dir",
        plots,
        "--no-progress",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /Serving Benchmark Result/);
      const res = json(out);
      for (const k of [
        "completed",
        "failed",
        "duration",
        "request_throughput",
        "output_throughput",
        "total_token_throughput",
        "request_goodput",
        "mean_ttft_ms",
        "median_ttft_ms",
        "std_ttft_ms",
        "p99_ttft_ms",
        "p90_tpot_ms",
        "mean_itl_ms",
        "p95_e2el_ms",
        "input_lens",
        "output_lens",
        "ttfts",
        "itls",
        "errors",
      ])
        assert.ok(k in res, `missing ${k}`);
      assert.equal(res.completed, 16);
      assert.equal(res.failed, 4);
      assert.deepEqual(res.errors_by_kind, { http_5xx: 4 });
      assert.equal(res.model_id, "mini-model");
      assert.equal(res.endpoint, "/v1/completions");
      assert.equal(res.request_goodput, res.request_throughput);
      assert.equal(res.config.calibration.tokens_per_word, 2);
      assert.equal(res.server.prefix_cache_queries, 16 * 32); // failed requests never reach the counter
      const body = mini.seen[0]!.body;
      assert.equal(body.stream, true);
      assert.deepEqual(body.stream_options, { include_usage: true });
      assert.equal(body.max_tokens, 5);
      assert.equal(body.temperature, 0);
      assert.equal(mini.seen[0]!.path, "/v1/completions");
      assert.equal(mini.seen[0]!.headers["x-user-id"], undefined);
      // 64 tokens at 2 tokens a word: 32 words.
      assert.equal(String(body.prompt).split(" ").length, 32);
      const lines = readFileSync(csv, "utf8").trim().split("\n");
      assert.equal(lines.length, 21);
      assert.match(lines[0]!, /^index,session_id,round,start_ms,ok/);
      const [plot] = readdirSync(plots);
      assert.match(plot!, /^random-in=64-out=5-qps=200-seed=3-127\.0\.0\.1-\d+\.latency-cdf\.svg$/);
      const svg = readFileSync(join(plots, plot!), "utf8");
      assert.match(svg, /^<\?xml/);
      assert.match(svg, /TTFT CDF/);
      assert.match(svg, /<polyline /);
    },
  );
});

test("multi-round-qa: chat, x-user-id, each round waits for and carries the previous answer", async () => {
  await withMini({ itlMs: 1, apiKey: "k3y" }, async (url, mini) => {
    const out = join(dir, "mrqa.json");
    const r = await bench([
      "--base-url",
      url,
      "--workload",
      "multi-round-qa",
      "--num-users",
      "3",
      "--num-rounds",
      "3",
      "--shared-system-prompt",
      "30",
      "--user-history-prompt",
      "20",
      "--answer-len",
      "4",
      "--concurrency",
      "2",
      "--api-key",
      "k3y",
      "--out",
      out,
      "--no-progress",
    ]);
    assert.equal(r.code, 0, r.stderr);
    // no /tokenize on this server: the bench says it assumes 1 token a word
    assert.match(r.stderr, /assuming 1 token a word/);
    const res = json(out);
    assert.equal(res.completed, 9);
    assert.equal(res.endpoint, "/v1/chat/completions");
    assert.equal(res.max_concurrency, 2);
    const byUser = new Map<string, { messages: { role: string; content: string }[] }[]>();
    for (const s of mini.seen) {
      assert.equal(s.path, "/v1/chat/completions");
      const u = String(s.headers["x-user-id"]);
      byUser.set(u, [...(byUser.get(u) ?? []), s.body as Json]);
    }
    assert.deepEqual([...byUser.keys()].sort(), ["user-0", "user-1", "user-2"]);
    for (const rounds of byUser.values()) {
      assert.deepEqual(
        rounds.map((b) => b.messages.length),
        [2, 4, 6],
      );
      // the answer streamed in round 0 (" w0 w1 w2 w3") comes back as the assistant turn
      assert.equal(rounds[1]!.messages[2]!.role, "assistant");
      assert.equal(rounds[1]!.messages[2]!.content, " w0 w1 w2 w3");
      assert.equal(rounds[2]!.messages[3]!.content, rounds[1]!.messages[3]!.content);
    }
    // at most 2 users active at once: user-2 starts only after one of the first two finished
    const firstOf = (u: string) => mini.seen.findIndex((s) => s.headers["x-user-id"] === u);
    assert.ok(firstOf("user-2") >= 4, `user-2 started at request ${firstOf("user-2")}`);
  });
});

test("timings: TTFT, TPOT and ITL match the server's controlled delays; an early role chunk is not a token", async () => {
  await withMini({ ttftMs: 60, itlMs: 15, earlyRole: true }, async (url) => {
    const out = join(dir, "timing.json");
    const r = await bench([
      "--base-url",
      url,
      "--endpoint",
      "chat",
      "--num-requests",
      "4",
      "--concurrency",
      "1",
      "--input-len",
      "10",
      "--output-len",
      "6",
      "--out",
      out,
      "--no-progress",
      "--no-calibrate",
    ]);
    assert.equal(r.code, 0, r.stderr);
    const res = json(out);
    // Timers fire at or after their delay (Node may round down by under 1 ms) and a loaded host only
    // adds delay, so the lower bounds hold on any machine; they catch a role chunk taken as a token.
    for (const t of res.ttfts as number[]) assert.ok(t >= 0.059, `ttft ${t}`);
    assert.ok(res.mean_tpot_ms >= 14, `tpot ${res.mean_tpot_ms}`);
    assert.ok(res.median_itl_ms >= 14, `itl ${res.median_itl_ms}`);
    // units: the per-request figures are seconds and the summaries milliseconds of the same samples
    // (a slip is a factor of 1,000; no upper bound on time, which a busy machine could break)
    const meanS = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const sameScale = (ms: number, s: number) => ms / (s * 1000) > 0.5 && ms / (s * 1000) < 2;
    assert.ok(sameScale(res.mean_ttft_ms, meanS(res.ttfts)), `ttft ${res.mean_ttft_ms} ms`);
    // the median against the samples' median: one stall of a busy machine moves a mean, not a median
    const medianS = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    assert.ok(
      sameScale(res.median_itl_ms, medianS((res.itls as number[][]).flat())),
      `itl ${res.median_itl_ms} ms`,
    );
    assert.ok(
      sameScale(res.mean_tpot_ms, meanS((res.itls as number[][]).flat())),
      `tpot ${res.mean_tpot_ms} ms`,
    );
    assert.deepEqual(res.output_lens, [6, 6, 6, 6]);
    assert.equal((res.itls as number[][])[0]!.length, 5);
    // each request's parts add up: first token, then the gaps between tokens, within its end-to-end time
    (res.itls as number[][]).forEach((gaps, i) => {
      const [ttft, e2el] = [(res.ttfts as number[])[i]!, (res.e2els as number[])[i]!];
      assert.ok(ttft + gaps.reduce((x, g) => x + g, 0) <= e2el + 1e-5, `request ${i}`);
    });
  });
});

/**
 * A result file as `bench` writes it (the fields compare reads), for `n` requests whose samples are drawn
 * from one fixed distribution: TTFT 100..180 ms (+ `slowerMs`), 8 tokens 25 ± 3 ms apart, sent 50 ms apart.
 * Seeded, so compare's verdict on two of them is the same on any machine.
 */
function syntheticRun(seed: number, slowerMs = 0, n = 200): Record<string, unknown> {
  const rand = mulberry32(seed);
  const ttfts: number[] = [];
  const itls: number[][] = [];
  const e2els: number[] = [];
  const starts: number[] = [];
  for (let i = 0; i < n; i++) {
    const ttft = (100 + 80 * rand() + slowerMs) / 1000;
    const gaps = Array.from({ length: 7 }, () => (22 + 6 * rand()) / 1000);
    ttfts.push(ttft);
    itls.push(gaps);
    e2els.push(gaps.reduce((a, g) => a + g, ttft));
    starts.push(i * 0.05);
  }
  return {
    duration: Math.max(...starts.map((s, i) => s + e2els[i]!)),
    ttfts,
    itls,
    e2els,
    start_times: starts,
    input_lens: ttfts.map(() => 10),
    output_lens: ttfts.map(() => 8),
    errors: ttfts.map(() => ""),
    session_ids: ttfts.map((_, i) => `s${i}`),
  };
}

// What compare concludes is checked on seeded samples, where a busy machine cannot move it; a real run
// is compared with itself to show that compare reads what bench writes. Real A/B comparisons of a
// router's policies are in docs/benchmarks.md (the `bench compare` row).
test("compare: two runs of one configuration show no difference; a slower server does", async () => {
  const real = join(dir, "real.json");
  await withMini({ ttftMs: (n) => 10 + (n % 5), itlMs: 2 }, async (url) => {
    const args = ["--num-requests", "30", "--concurrency", "4", "--input-len", "10", "--output-len", "4"];
    const r = await bench(["--base-url", url, "--out", real, "--no-progress", "--no-calibrate", ...args]);
    assert.equal(r.code, 0, r.stderr);
  });
  const self = await bench(["compare", real, real]);
  assert.equal(self.code, 0, self.stderr);
  assert.match(self.stdout, /No difference beyond noise/, self.stdout);

  const a = join(dir, "a.json");
  const b = join(dir, "b.json");
  const c = join(dir, "c.json");
  writeFileSync(a, JSON.stringify({ ...syntheticRun(1), config: { label: "A" } }));
  writeFileSync(b, JSON.stringify({ ...syntheticRun(2), config: { label: "A again" } }));
  writeFileSync(c, JSON.stringify({ ...syntheticRun(3, 100), config: { label: "slower" } }));
  // two draws of one distribution differ by under 1% in their means and medians; 10% is the smallest
  // effect asked for, and the slower run's TTFT is 75% longer
  const same = await bench(["compare", a, b, "--min-effect", "0.1", "--out", join(dir, "cmp.json")]);
  assert.equal(same.code, 0, same.stderr);
  assert.match(same.stdout, /No difference beyond noise/, same.stdout);
  const diff = await bench(["compare", a, c, "--min-effect", "0.1", "--plot", join(dir, "cmp.svg")]);
  assert.equal(diff.code, 0, diff.stderr);
  assert.match(diff.stdout, /mean_ttft_ms .* B worse/, diff.stdout);
  assert.match(readFileSync(join(dir, "cmp.svg"), "utf8"), /slower/);
  const rows = json(join(dir, "cmp.json")).metrics as { metric: string; significant: boolean }[];
  assert.ok(rows.length >= 10 && rows.every((x) => !x.significant));
});

test("a stream that ends on EOS at its first token is a success, as vllm bench counts it", async () => {
  await withMini({ eosFirstEvery: 3 }, async (url) => {
    const res = await benchJson(url, "eos", [
      "--num-requests",
      "9",
      "--concurrency",
      "3",
      "--input-len",
      "8",
      "--output-len",
      "4",
    ]);
    assert.equal(res.failed, 0, JSON.stringify(res.errors_by_kind));
    assert.equal(res.completed, 9);
    assert.deepEqual([...(res.output_lens as number[])].sort(), [1, 1, 1, 4, 4, 4, 4, 4, 4]);
    for (const t of res.ttfts as number[]) assert.ok(Number.isFinite(t) && t > 0, `ttft ${t}`);
  });
});

test("runs without --label are named by their settings, and their plots never overwrite each other", async () => {
  await withMini({}, async (url) => {
    const plots = join(dir, "shared-plots");
    const run = async (extra: string[]) => {
      const args = ["--num-requests", "4", "--input-len", "8", "--output-len", "2", "--plot-dir", plots];
      return (await benchJson(url, `label-${extra.length}`, [...args, ...extra])).config.label as string;
    };
    const port = new URL(url).port;
    assert.equal(await run([]), `random in=8 out=2 @127.0.0.1:${port}`);
    assert.equal(await run(["--concurrency", "2"]), `random in=8 out=2 c=2 @127.0.0.1:${port}`);
    // the same settings again: a third file beside the first, not over it
    await run([]);
    assert.deepEqual(readdirSync(plots).sort(), [
      `random-in=8-out=2-127.0.0.1-${port}-2.latency-cdf.svg`,
      `random-in=8-out=2-127.0.0.1-${port}.latency-cdf.svg`,
      `random-in=8-out=2-c=2-127.0.0.1-${port}.latency-cdf.svg`,
    ]);
  });
});

test("the default --base-url is the router `npm start` runs", async () => {
  const r = await bench(["--help"]);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /--base-url[^-]*\(default: http:\/\/127\.0\.0\.1:8080\)/);
});

test("bad flags fail with exit code 2 and say which flag", async () => {
  const r = await bench(["--workload", "nope"]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--workload/);
  const q = await bench(["--qps", "0"]);
  assert.equal(q.code, 2);
  assert.match(q.stderr, /--qps/);
});
