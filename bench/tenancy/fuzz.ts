// Fuzz the router's request path with generated and mutated requests against a
// router in its own process with tenancy on, sampling its RSS every 10 000 requests. Fails (exit 1)
// on any 5xx, an unanswered valid request, an unsafe X-Request-Id echo, a dead router, or RSS growing
// more than --max-growth MiB after warm-up. Not part of npm test (test/tenancy/router-fuzz.test.ts
// runs the same generator in-process).
//   node --import tsx bench/tenancy/fuzz.ts [--count 100000] [--seed 42] [--connections 32] [--max-growth 64]
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { freePort } from "../support/cli.js";
import { hashKey } from "../../src/tenancy/keys.js";
import { spawnRouter, waitHttp } from "../support/router-harness.js";
import { fuzzTenancy, runFuzz } from "../support/tenancy-fuzz-gen.js";
import { startUpstream } from "../support/fakes/tenancy-upstream.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const count = Number(get("--count", "100000"));
const seed = Number(get("--seed", "42"));
const connections = Number(get("--connections", "32"));
const maxGrowth = Number(get("--max-growth", "64"));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  const up = await startUpstream();
  const dir = mkdtempSync(join(tmpdir(), "sy-fuzz-"));
  const cfg = join(dir, "router.yaml");
  writeFileSync(
    cfg,
    stringify({ tenancy: fuzzTenancy(hashKey), limits: { maxBodyBytes: 65536, bodyIdleTimeout: "2s" } }),
  );
  const port = await freePort();
  const router = spawnRouter(port, up.port, ["--config", cfg]);
  let exitCode: number | null = null;
  router.on("exit", (c) => (exitCode = c));
  const url = `http://127.0.0.1:${port}`;
  try {
    await waitHttp(`${url}/ready`);
    await runFuzz(url, 5_000, 1, connections);
    const rss0 = rssMiB(router.pid!);
    const samples: number[] = [rss0];
    const t0 = performance.now();
    const stats = await runFuzz(url, count, seed, connections, () => samples.push(rssMiB(router.pid!)));
    const secs = (performance.now() - t0) / 1000;
    const rss1 = rssMiB(router.pid!);
    const alive = exitCode === null && (await fetch(`${url}/health`)).status === 200;
    const statuses = Object.fromEntries([...stats.byStatus].sort((a, b) => a[0] - b[0]));
    console.log(
      `requests   ${stats.sent} in ${secs.toFixed(1)} s (${(stats.sent / secs).toFixed(0)}/s), seed ${seed}`,
    );
    console.log(`kinds      ${JSON.stringify(Object.fromEntries(stats.byKind))}`);
    console.log(`statuses   ${JSON.stringify(statuses)}  (-1 = connection closed by the router)`);
    console.log(
      `router RSS ${rss0.toFixed(0)} MiB after warm-up → ${rss1.toFixed(0)} MiB; samples ${samples.map((s) => s.toFixed(0)).join(" ")}`,
    );
    console.log(`router     ${alive ? "alive" : "DEAD"}`);
    const problems = [...stats.failures];
    if (!alive) problems.push("router died");
    if (rss1 - rss0 > maxGrowth) problems.push(`RSS grew ${(rss1 - rss0).toFixed(0)} MiB > ${maxGrowth}`);
    if (problems.length > 0) {
      console.log(`FAIL\n  ${problems.join("\n  ")}`);
      process.exitCode = 1;
    } else console.log("PASS: no 5xx, every valid request answered, no unsafe echo, RSS bounded");
  } finally {
    router.kill("SIGKILL");
    await up.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
