// Issue 9 acceptance 5: engines killed, hung, slowed, answering 5xx and resetting connections while a
// steady mixed load (streamed and not) runs through one router process. Every request must either
// succeed (whole body, streams ending in [DONE]) or get a clear error (an OpenAI-format error answer,
// or an SSE error event then [DONE]); none may hang past the router's total timeout. Exit 1 otherwise.
// Not part of npm test.
//   node --import tsx bench/router-chaos.ts [--duration 600] [--engines 4] [--concurrency 32] [--every 8]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { stringify } from "yaml";
import { freePort } from "../test/helpers/cli.js";
import { waitHttp } from "./router-harness.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const durationS = Number(get("--duration", "600"));
const engines = Number(get("--engines", "4"));
const concurrency = Number(get("--concurrency", "32"));
const everyS = Number(get("--every", "8"));

/** router timeouts for the run: short, so faults resolve within the run */
const TOTAL_MS = 20_000;
const CLIENT_GRACE_MS = 5_000;

const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const here = (rel: string) => fileURLToPath(new URL(rel + ext, import.meta.url));

type Outcome = "ok" | "clear-error" | "cut" | "unclear-error" | "hung";

function startEngine(port: number): ChildProcess {
  return spawn(process.execPath, [...process.execArgv, here("./tenancy-upstream"), String(port), "20"], {
    stdio: ["ignore", "ignore", "inherit"],
  });
}

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function setFault(port: number, mode: string): Promise<void> {
  try {
    const r = await request(`http://127.0.0.1:${port}/fault/${mode}`, {
      method: "POST",
      headersTimeout: 2000,
    });
    await r.body.dump();
  } catch {
    // a killed engine has no faults to set
  }
}

async function main(): Promise<void> {
  const ports = await Promise.all([...Array(engines)].map(() => freePort()));
  const procs: Array<ChildProcess | undefined> = ports.map((p) => startEngine(p));
  const dir = mkdtempSync(join(tmpdir(), "sy-chaos-"));
  const cfg = join(dir, "router.yaml");
  writeFileSync(
    cfg,
    stringify({
      backends: ports.map((p) => `http://127.0.0.1:${p}`),
      timeouts: { connect: "1s", firstByte: "4s", idle: "3s", total: TOTAL_MS, keepAlive: "2s" },
      health: { interval: "500ms", timeout: "500ms", failuresToEject: 2, successesToReadmit: 2 },
      retry: { maxAttempts: 3 },
    }),
  );
  const routerPort = await freePort();
  const router = spawn(
    process.execPath,
    [
      ...process.execArgv,
      here("../src/cli/main"),
      "router",
      "--host",
      "127.0.0.1",
      "--port",
      String(routerPort),
      "--config",
      cfg,
    ],
    { stdio: "ignore", env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" } },
  );
  const url = `http://127.0.0.1:${routerPort}`;
  const agent = new Agent({ connections: concurrency * 2 });
  const counts = new Map<Outcome, number>();
  const reasons = new Map<string, number>();
  const faults = new Map<string, number>();
  let longest = 0;
  const note = (o: Outcome, why: string, ms: number) => {
    counts.set(o, (counts.get(o) ?? 0) + 1);
    if (o !== "ok") reasons.set(`${o}: ${why}`, (reasons.get(`${o}: ${why}`) ?? 0) + 1);
    longest = Math.max(longest, ms);
  };
  try {
    await Promise.all(ports.map((p) => waitHttp(`http://127.0.0.1:${p}/health`)));
    await waitHttp(`${url}/ready`);
    const end = Date.now() + durationS * 1000;
    let seq = 0;
    const client = async () => {
      while (Date.now() < end) {
        const stream = seq++ % 2 === 0;
        const maxTokens = 5 + (seq % 40);
        const t0 = performance.now();
        const ac = new AbortController();
        const guard = setTimeout(() => ac.abort(), TOTAL_MS + CLIENT_GRACE_MS);
        try {
          const r = await request(`${url}/v1/completions`, {
            method: "POST",
            dispatcher: agent,
            signal: ac.signal,
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ model: "bench/m", prompt: "x", max_tokens: maxTokens, stream }),
            headersTimeout: 0,
            bodyTimeout: 0,
          });
          const text = await r.body.text();
          const ms = performance.now() - t0;
          if (r.statusCode !== 200) {
            const clear = /^\{"error":\{"message":/.test(text);
            note(clear ? "clear-error" : "unclear-error", `status ${r.statusCode}`, ms);
          } else if (stream) {
            const errEvent = /data: \{"error":\{"message":"([^"]{0,40})/.exec(text);
            const tokens = (text.match(/"text":" tok"/g) ?? []).length;
            if (errEvent) note("clear-error", `sse error: ${errEvent[1]}`, ms);
            else if (text.endsWith("data: [DONE]\n\n") && tokens === maxTokens) note("ok", "", ms);
            else note("cut", `stream without [DONE] or short (${tokens}/${maxTokens})`, ms);
          } else {
            try {
              JSON.parse(text);
              note("ok", "", ms);
            } catch {
              note("cut", "truncated JSON body", ms);
            }
          }
        } catch (err) {
          const ms = performance.now() - t0;
          const code = (err as { code?: string }).code ?? (err as Error).name;
          if (ac.signal.aborted) note("hung", `no end after ${TOTAL_MS + CLIENT_GRACE_MS} ms`, ms);
          else note("cut", `transport ${code}`, ms);
        } finally {
          clearTimeout(guard);
        }
      }
    };
    // chaos: one fault every `everyS` seconds on a random engine, healed a few seconds later
    const chaos = (async () => {
      let n = 0;
      while (Date.now() + everyS * 1000 < end) {
        await new Promise((r) => setTimeout(r, everyS * 1000));
        const i = n++ % engines;
        const kind = ["kill", "hang", "slow", "5xx", "reset"][Math.floor(Math.random() * 5)]!;
        faults.set(kind, (faults.get(kind) ?? 0) + 1);
        const heal = 3_000 + Math.floor(Math.random() * 4_000);
        if (kind === "kill") {
          procs[i]?.kill("SIGKILL");
          procs[i] = undefined;
          setTimeout(() => (procs[i] = startEngine(ports[i]!)), heal).unref();
        } else {
          await setFault(ports[i]!, kind);
          setTimeout(() => void setFault(ports[i]!, "ok"), heal).unref();
        }
      }
    })();
    const rssStart = rssMiB(router.pid!);
    const progress = setInterval(() => {
      const c = Object.fromEntries(counts);
      console.log(
        `${new Date().toISOString()} ${JSON.stringify(c)} faults ${JSON.stringify(Object.fromEntries(faults))} router RSS ${rssMiB(router.pid!).toFixed(0)} MiB`,
      );
    }, 30_000);
    await Promise.all([...Array(concurrency)].map(() => client()));
    clearInterval(progress);
    await chaos;
    const total = [...counts.values()].reduce((a, b) => a + b, 0);
    console.log(
      `duration   ${durationS} s, ${engines} engines, concurrency ${concurrency}, a fault every ${everyS} s`,
    );
    console.log(`faults     ${JSON.stringify(Object.fromEntries(faults))}`);
    console.log(`requests   ${total}: ${JSON.stringify(Object.fromEntries(counts))}`);
    console.log(`longest    ${longest.toFixed(0)} ms (router total timeout ${TOTAL_MS} ms)`);
    console.log(`router RSS ${rssStart.toFixed(0)} → ${rssMiB(router.pid!).toFixed(0)} MiB`);
    for (const [k, v] of [...reasons].sort((a, b) => b[1] - a[1]).slice(0, 15)) console.log(`  ${v}\t${k}`);
    const bad = (counts.get("cut") ?? 0) + (counts.get("unclear-error") ?? 0) + (counts.get("hung") ?? 0);
    if (bad > 0) {
      console.log(`FAIL: ${bad} requests neither succeeded nor got a clear error`);
      process.exitCode = 1;
    } else console.log("PASS: every request succeeded or got a clear error; none hung");
  } finally {
    await agent.close().catch(() => undefined);
    router.kill("SIGKILL");
    for (const p of procs) p?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
