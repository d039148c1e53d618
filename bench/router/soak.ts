// Soak: the router under moderate mixed load (non-streaming, streams, client aborts, some unknown
// models) for a long time, sampling the RSS of each of its processes (the primary and every worker
// with --workers); memory must stay flat after warm-up: each process's RSS may grow at most 10%
// between minute 2 and the end. Not part of npm test.
//   node --import tsx bench/router/soak.ts [--duration 600] [--concurrency 16] [--workers N]
import { readFileSync } from "node:fs";
import { Pool } from "undici";
import { freePort } from "../support/cli.js";
import { spawnRouter, spawnUpstream, waitHttp } from "../support/router-harness.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const duration = Number(get("--duration", "600"));
const concurrency = Number(get("--concurrency", "16"));
const workers = argv.includes("--workers") ? ["--workers", get("--workers", "1")] : [];
/** the window compared: from minute 2 (or a quarter of a short run) to the end */
const fromS = Math.min(120, duration / 4);

function rssMiB(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

/** The router's processes: the primary (or the lone router) and its workers, by pid. */
function processes(pid: number): number[] {
  try {
    const kids = readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/);
    return [pid, ...kids.filter(Boolean).map(Number)];
  } catch {
    return [pid];
  }
}

async function main(): Promise<void> {
  const upPort = await freePort();
  const routerPort = await freePort();
  const up = spawnUpstream(upPort);
  const router = spawnRouter(routerPort, upPort, workers);
  const base = `http://127.0.0.1:${routerPort}`;
  await waitHttp(`${base}/ready`);
  const pool = new Pool(base, { connections: concurrency });
  const end = Date.now() + duration * 1000;
  let n = 0;
  let errors = 0;
  const samples: { t: number; rss: Map<number, number> }[] = [];
  const sampler = setInterval(() => {
    const t = Math.round((Date.now() - (end - duration * 1000)) / 1000);
    const rss = new Map(processes(router.pid!).map((p) => [p, rssMiB(p)]));
    samples.push({ t, rss });
    const each = [...rss.values()].map((v) => v.toFixed(1)).join(" ");
    console.log(`t=${t}s rss=${each} MiB (pid order) requests=${n} errors=${errors}`);
  }, 10_000);
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (let i = 0; Date.now() < end; i++) {
        const kind = (i + w) % 10;
        const stream = kind < 4;
        const model = kind === 9 ? "missing/model" : "bench/m";
        const ac = new AbortController();
        try {
          const r = await pool.request({
            path: "/v1/completions",
            method: "POST",
            headers: { "content-type": "application/json", "x-session-id": `s${i % 100}` },
            body: JSON.stringify({ model, prompt: "hello", max_tokens: 256, stream }),
            signal: ac.signal,
          });
          if (kind === 3) {
            // a client that goes away mid-stream
            for await (const _ of r.body) {
              ac.abort();
              break;
            }
          } else for await (const _ of r.body) void _;
          if (r.statusCode !== 200 && model === "bench/m") errors++;
        } catch {
          if (kind !== 3) errors++;
        }
        n++;
      }
    }),
  );
  clearInterval(sampler);
  await pool.close();
  router.kill("SIGTERM");
  up.kill("SIGTERM");
  const warm = samples.filter((s) => s.t >= fromS);
  console.log(
    `soak ${duration}s, ${n} requests, ${errors} errors; RSS from t=${warm[0]?.t ?? "?"}s to the end:`,
  );
  let worst = 0;
  for (const [pid, first] of warm[0]?.rss ?? new Map<number, number>()) {
    const seen = warm.map((s) => s.rss.get(pid)).filter((v): v is number => v !== undefined && !isNaN(v));
    const last = seen.at(-1) ?? NaN;
    const growth = (last - first) / first;
    worst = Math.max(worst, growth);
    const role = pid !== router.pid ? "worker" : (warm[0]?.rss.size ?? 1) > 1 ? "primary" : "router";
    console.log(
      `  ${role} ${pid}: ${first.toFixed(1)} → ${last.toFixed(1)} MiB (${(growth * 100).toFixed(1)}%, max ${Math.max(...seen).toFixed(1)})`,
    );
  }
  if (worst > 0.1) {
    console.log("a process's RSS grew by more than 10% after warm-up: possible leak");
    process.exitCode = 1;
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
