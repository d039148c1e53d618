// The bench works unchanged against the router (the sim and the independent mini server are covered
// in sim.test.ts and cli.test.ts): the `switchyard bench` CLI, pointed at a router in front of two
// sims, completes every request, and the figures it scrapes from the engines behind the router add
// up; without --scrape flags it finds the engines in the router's engine list and reads their own
// /metrics, as it does pointed at one engine.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { cliCommand, freePort, spawnCli, waitForHttp, type Spawned } from "../../bench/support/cli.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

test("switchyard bench against the router completes every request and reads the engines' metrics", async () => {
  const dir = mkdtempSync(join(tmpdir(), "bench-router-"));
  const procs: Spawned[] = [];
  try {
    const engines: string[] = [];
    for (let i = 0; i < 2; i++) {
      const port = await freePort();
      procs.push(
        spawnCli([
          "sim",
          MODEL,
          "--host",
          "127.0.0.1",
          "--port",
          String(port),
          "--time-scale",
          "0.2",
          "--seed",
          "1",
        ]),
      );
      engines.push(`http://127.0.0.1:${port}`);
    }
    await Promise.all(engines.map((u) => waitForHttp(`${u}/health`)));
    const rport = await freePort();
    const routerArgs = ["router", "--host", "127.0.0.1", "--port", String(rport), "--policy", "round-robin"];
    for (const u of engines) routerArgs.push("--backend", u);
    procs.push(spawnCli(routerArgs));
    const router = `http://127.0.0.1:${rport}`;
    await waitForHttp(`${router}/ready`);

    const out = join(dir, "r.json");
    const { cmd, args } = cliCommand();
    const res = spawnSync(
      cmd,
      [
        ...args,
        "bench",
        "--base-url",
        router,
        "--workload",
        "multi-round-qa",
        "--num-users",
        "4",
        "--num-rounds",
        "3",
        "--concurrency",
        "4",
        "--shared-system-prompt",
        "200",
        "--user-history-prompt",
        "200",
        "--answer-len",
        "16",
        "--scrape",
        `${engines[0]}/metrics`,
        "--scrape",
        `${engines[1]}/metrics`,
        "--out",
        out,
      ],
      { encoding: "utf8", timeout: 90_000, env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" } },
    );
    assert.equal(res.status, 0, `${res.stdout}\n${res.stderr}`);
    const r = JSON.parse(readFileSync(out, "utf8")) as Record<string, unknown>;
    assert.equal(r.completed, 12);
    assert.equal(r.failed, 0);
    assert.ok((r.mean_ttft_ms as number) > 0 && (r.request_throughput as number) > 0);
    // round-robin over two engines: both served, and the scraped server-side figures cover both
    const served = await Promise.all(
      engines.map(async (u) => {
        const text = await (await fetch(`${u}/metrics`)).text();
        const m = /^vllm:request_success_total\{[^}]*\} (\d+)/m.exec(text);
        return m ? Number(m[1]) : 0;
      }),
    );
    assert.ok(served[0]! > 0 && served[1]! > 0, `both engines served: ${served.join(", ")}`);
    // the scraped server-side figures sum both engines: every request the bench sent was seen
    const server = (r.server ?? (r.runs as Array<Record<string, unknown>> | undefined)?.[0]?.server) as
      { requests_seen: number | null; prefix_cache_queries: number | null } | undefined;
    assert.ok(server, `no server figures in ${Object.keys(r).join(", ")}`);
    assert.equal(server.requests_seen, 12);
    assert.ok((server.prefix_cache_queries ?? 0) > 0);

    // no --scrape: the router's /metrics has no vllm: series; its engine list names the engines to read
    const out2 = join(dir, "r2.json");
    const res2 = spawnSync(
      cmd,
      [...args, "bench", "--base-url", router, "--num-requests", "8", "--concurrency", "4"].concat([
        "--input-len",
        "64",
        "--output-len",
        "4",
        "--seed",
        "5",
        "--out",
        out2,
        "--no-progress",
      ]),
      { encoding: "utf8", timeout: 90_000, env: { ...process.env, SWITCHYARD_LOG_LEVEL: "error" } },
    );
    assert.equal(res2.status, 0, `${res2.stdout}\n${res2.stderr}`);
    const s2 = JSON.parse(readFileSync(out2, "utf8")).server as {
      prefix_cache_queries: number | null;
      num_preemptions: number | null;
      mean_ttft_ms: number | null;
      mean_itl_ms: number | null;
      requests_seen: number | null;
      engines?: { url: string; prefix_cache_queries: number }[];
    };
    assert.deepEqual(s2.engines?.map((e) => e.url).sort(), [...engines].sort());
    // round-robin: both engines saw prompts, and the fleet figure is their sum
    assert.ok(
      s2.engines!.every((e) => e.prefix_cache_queries > 0),
      JSON.stringify(s2.engines),
    );
    assert.equal(
      s2.prefix_cache_queries,
      s2.engines!.reduce((a, e) => a + e.prefix_cache_queries, 0),
    );
    assert.match(res2.stdout, /Prefix cache hit rate:/);
    // the engines' server-side figures, as a bench pointed at one engine reads them
    assert.equal(s2.requests_seen, 8);
    assert.equal(s2.num_preemptions, 0);
    assert.ok((s2.mean_ttft_ms ?? 0) > 0 && (s2.mean_itl_ms ?? 0) > 0, JSON.stringify(s2));
    assert.doesNotMatch(res2.stdout, /(Preemptions|Engine mean TTFT|Engine mean ITL).*n\/a/);
  } finally {
    await Promise.all(procs.reverse().map((p) => p.stop()));
    rmSync(dir, { recursive: true, force: true });
  }
});
