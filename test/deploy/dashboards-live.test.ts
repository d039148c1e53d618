// `switchyard up --monitoring` starts a real Prometheus (Debian's package) that scrapes the router, both
// engines and the shared cache server (`--cache-server`) with the project's alert rules loaded, and every query of the shipped Grafana dashboards
// returns data from it, except the series a healthy local stack never has (named, with the reason, in
// src/ops/dashboards.ts). Under `npm test` or CI=true a missing prometheus binary fails (.ci/install-tools.sh
// installs it); a file run on its own skips.
import { test } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePorts, freeUpPorts, spawnCli, waitForHttp } from "../../bench/support/cli.js";
import { checkDashboards, dashboardQueries, type QueryResult } from "../../src/ops/dashboards.js";
import { findTool, repoRoot, skipForTool } from "./tools.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

test("up --monitoring: Prometheus scrapes the stack with the rules loaded, and every dashboard query answers", async (t) => {
  if (!findTool("prometheus")) {
    return skipForTool(t, "prometheus not found on PATH: run scripts/install-prometheus.sh");
  }
  const [port, promPort, lmPort, eventsPort, cacheMetricsPort] = await freePorts(5);
  const { engineBase, kvBase } = await freeUpPorts(2);
  const stack = spawnCli(
    ["up", "--engines", "2", "--port", String(port), "--engine-base-port", String(engineBase)].concat(
      ["--kv-events-base-port", String(kvBase), "--model", MODEL, "--time-scale", "0.2", "--monitoring"],
      ["--prometheus-port", String(promPort), "--prometheus-interval", "1", "--cache-server"],
      ["--cache-server-port", String(lmPort), "--cache-server-events-port", String(eventsPort)],
      ["--cache-server-metrics-port", String(cacheMetricsPort)],
    ),
  );
  const router = `http://127.0.0.1:${port}`;
  const prom = `http://127.0.0.1:${promPort}`;
  let traffic = true;
  let load: Promise<void> = Promise.resolve();
  try {
    await waitForHttp(`${router}/ready`, 60_000);
    await waitForHttp(`${prom}/-/ready`, 30_000);
    await until("the stack to print Prometheus's URL", 10_000, async () =>
      stack.output().includes(`prometheus ${prom}`) ? true : undefined,
    );

    // streamed and whole requests, some sharing a prompt (prefix hits), until the checks are done
    load = (async () => {
      for (let i = 0; traffic; i++) {
        await Promise.all(
          [0, 1, 2].map((k) =>
            fetch(`${router}/v1/completions`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: JSON.stringify({
                model: MODEL,
                prompt: `dashboard check ${k === 0 ? "shared" : i} `.repeat(40),
                max_tokens: 8,
                stream: k !== 2,
              }),
            }).then((r) => r.arrayBuffer()),
          ),
        );
      }
    })().catch(() => undefined); // the stack stopping under the last requests is not a failure

    const rules = (await (await fetch(`${prom}/api/v1/rules`)).json()) as {
      data: { groups: { name: string; rules: unknown[] }[] };
    };
    assert.deepEqual(rules.data.groups.map((g) => g.name).sort(), [
      "switchyard-cache-server",
      "switchyard-engines",
      "switchyard-router",
    ]);
    // targets appear once Prometheus has applied its configuration, a moment after it is ready
    const targets = await until("four scrape targets", 15_000, async () => {
      const body = (await (await fetch(`${prom}/api/v1/targets`)).json()) as {
        data: { activeTargets: { labels: Record<string, string> }[] };
      };
      const list = body.data.activeTargets.map((x) => `${x.labels.job} ${x.labels.pod}`).sort();
      return list.length >= 4 ? list : undefined;
    });
    assert.deepEqual(targets, [
      "switchyard-cache-server cache-server",
      "switchyard-engine engine-0",
      "switchyard-engine engine-1",
      "switchyard-router router",
    ]);

    const queries = dashboardQueries(join(repoRoot(), "deploy", "grafana"));
    assert.ok(queries.length >= 40, `${queries.length} dashboard queries`);
    let last: QueryResult[] = [];
    await until("every dashboard query to answer", 45_000, async () => {
      last = await checkDashboards(prom, queries, "30s");
      return last.every((r) => r.verdict === "data" || r.verdict === "expected-empty") ? true : undefined;
    }).catch((err: Error) => {
      const bad = last.filter((r) => r.verdict === "error" || r.verdict === "empty");
      throw new Error(
        `${err.message}:\n${bad.map((r) => `  ${r.dashboard} | ${r.panel} | ${r.verdict}: ${r.detail}\n    ${r.query}`).join("\n")}`,
      );
    });
    // the router's and the engines' dashboards show data everywhere but the failure panels (the engines
    // load from the cache server through LMCache: their offload traffic shows)
    const quiet = last.filter((r) => r.verdict === "expected-empty" && r.dashboard !== "cache-server.json");
    assert.deepEqual(quiet.map((r) => r.panel).sort(), [
      "Engine ejections",
      "Rejected by reason",
      "Retries by reason",
    ]);
    // and the cache server's dashboard reads the server the engines store to
    const cache = last.filter((r) => r.dashboard === "cache-server.json" && r.verdict === "data");
    assert.ok(cache.length > 0, "no cache-server panel shows data");
  } finally {
    traffic = false;
    await load;
    const code = await stack.stop("SIGINT");
    assert.equal(code, 0, stack.output().slice(-2000));
  }
  // Prometheus went with the stack
  await assert.rejects(fetch(`${prom}/-/ready`));
});

/** Polls `fn` until it gives a value; `timeoutMs` is a hang guard, never under a minute. */
async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + Math.max(timeoutMs, 60_000); // timing-ok: a hang guard, polled
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}
