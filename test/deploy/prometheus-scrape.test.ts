// A real Prometheus (Debian's `prometheus` package) scrapes a running sim, router and cache server
// every second; the key series must be queryable through its HTTP API and every target up.
// Under CI=true a missing prometheus binary fails (deploy/ci/install-k8s-tools.sh installs it);
// elsewhere the test is skipped.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort, waitForHttp } from "../../bench/support/cli.js";
import { startLocalStack, type LocalStack } from "./stack.js";
import { findTool, missingTool } from "./tools.js";

interface PromVector {
  status: string;
  data: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
}

async function query(prom: string, expr: string): Promise<PromVector["data"]["result"]> {
  const res = await fetch(`${prom}/api/v1/query?query=${encodeURIComponent(expr)}`);
  const body = (await res.json()) as PromVector;
  assert.equal(body.status, "success", `query ${expr}: ${JSON.stringify(body)}`);
  return body.data.result;
}

/** Polls `fn` until it gives a value; `timeoutMs` is a hang guard, never under a minute. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + Math.max(timeoutMs, 60_000); // timing-ok: a hang guard, polled
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

describe("a real Prometheus scrapes the router, a sim and the cache server", { timeout: 240_000 }, () => {
  let stack: LocalStack | undefined;
  let prometheus: ChildProcess | undefined;
  let promLog = "";
  let dir = "";
  let prom = "";
  let skipReason = "";
  let routerUrl = "";

  before(async () => {
    const bin = findTool("prometheus");
    if (!bin) {
      skipReason = missingTool(
        "prometheus not found on PATH: run deploy/ci/install-k8s-tools.sh (Debian package prometheus)",
      );
      return;
    }
    stack = await startLocalStack();
    const { simPort, routerPort, cacheMetricsPort } = stack;
    const promPort = await freePort();
    routerUrl = `http://127.0.0.1:${routerPort}`;

    dir = mkdtempSync(join(tmpdir(), "prom-scrape-"));
    const job = (name: string, port: number) =>
      `  - job_name: ${name}\n    static_configs:\n      - targets: ["127.0.0.1:${port}"]\n`;
    writeFileSync(
      join(dir, "prometheus.yml"),
      "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n  evaluation_interval: 1s\nscrape_configs:\n" +
        job("switchyard-engine", simPort) +
        job("switchyard-router", routerPort) +
        job("switchyard-cache-server", cacheMetricsPort),
    );
    prometheus = spawn(
      bin,
      [
        `--config.file=${join(dir, "prometheus.yml")}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${promPort}`,
        "--storage.tsdb.retention.time=1h",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    const keep = (b: Buffer) => (promLog = (promLog + b.toString("utf8")).slice(-20_000));
    prometheus.stdout!.on("data", keep);
    prometheus.stderr!.on("data", keep);
    prom = `http://127.0.0.1:${promPort}`;
    await waitForHttp(`${prom}/-/ready`, 30_000).catch((err: Error) => {
      throw new Error(`${err.message}\nprometheus log:\n${promLog}`);
    });
    // traffic through the router, so the request series exist too
    const res = await fetch(`${routerUrl}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "meta-llama/Llama-3.1-8B-Instruct",
        messages: [{ role: "user", content: "hello" }],
        max_tokens: 4,
      }),
    });
    assert.equal(res.status, 200);
    await res.arrayBuffer();
  });

  after(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus!.once("exit", r));
      prometheus.kill("SIGTERM");
      const t = setTimeout(() => prometheus!.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(t);
    }
    await stack?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("every target is up", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const up = await until("all three targets up", 30_000, async () => {
      const r = await query(prom, "up == 1");
      return r.length === 3 ? r : undefined;
    });
    assert.deepEqual(up.map((s) => s.metric.job).sort(), [
      "switchyard-cache-server",
      "switchyard-engine",
      "switchyard-router",
    ]);
  });

  it("the key series are stored: engine load and KV usage, router and cache-server families", async (t) => {
    if (skipReason) return t.skip(skipReason);
    const present = async (expr: string, job: string) => {
      const r = await until(expr, 20_000, async () => {
        const v = await query(prom, expr);
        return v.length > 0 ? v : undefined;
      });
      assert.ok(
        r.every((s) => s.metric.job === job),
        `${expr}: expected job ${job}, got ${JSON.stringify(r.map((s) => s.metric))}`,
      );
      return r;
    };
    const running = await present("vllm:num_requests_running", "switchyard-engine");
    assert.equal(running[0]!.metric.model_name, "meta-llama/Llama-3.1-8B-Instruct");
    await present("vllm:kv_cache_usage_perc", "switchyard-engine");
    await present("switchyard_requests_in_flight", "switchyard-router");
    const served = await present('switchyard_requests_total{status="200"}', "switchyard-router");
    assert.ok(Number(served[0]!.value[1]) >= 1, "the chat completion through the router was counted");
    await present("switchyard_engine_healthy == 1", "switchyard-router");
    await present("switchyard_cache_connections_total", "switchyard-cache-server");
  });
});
