// Soak: the router under moderate mixed load (non-streaming, streams, client aborts, some unknown
// models) for a long time, sampling its RSS; memory must stay flat after warm-up. Not part of npm test.
//   node --import tsx bench/router-soak.ts [--duration 600] [--concurrency 16]
import { readFileSync } from "node:fs";
import { Pool } from "undici";
import { freePort } from "../test/helpers/cli.js";
import { spawnRouter, spawnUpstream, waitHttp } from "./router-harness.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const duration = Number(get("--duration", "600"));
const concurrency = Number(get("--concurrency", "16"));

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function main(): Promise<void> {
  const upPort = await freePort();
  const routerPort = await freePort();
  const up = spawnUpstream(upPort);
  const router = spawnRouter(routerPort, upPort);
  const base = `http://127.0.0.1:${routerPort}`;
  await waitHttp(`${base}/ready`);
  const pool = new Pool(base, { connections: concurrency });
  const end = Date.now() + duration * 1000;
  let n = 0;
  let errors = 0;
  const samples: { t: number; rss: number }[] = [];
  const sampler = setInterval(() => {
    samples.push({ t: Math.round((Date.now() - (end - duration * 1000)) / 1000), rss: rssMiB(router.pid!) });
    const s = samples.at(-1)!;
    console.log(`t=${s.t}s rss=${s.rss.toFixed(1)} MiB requests=${n} errors=${errors}`);
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
  const warm = samples.filter((s) => s.t >= Math.min(60, duration / 4));
  const first = warm[0]?.rss ?? NaN;
  const last = warm.at(-1)?.rss ?? NaN;
  const max = Math.max(...warm.map((s) => s.rss));
  console.log(
    `soak ${duration}s, ${n} requests, ${errors} errors; RSS after warm-up ${first.toFixed(1)} → ${last.toFixed(1)} MiB (max ${max.toFixed(1)})`,
  );
  if (last > first * 1.2 + 10) {
    console.log("RSS grew by more than 20% + 10 MiB after warm-up: possible leak");
    process.exitCode = 1;
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
