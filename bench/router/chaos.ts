// Engines killed, hung, slowed, answering 5xx and resetting connections while a steady mixed load
// (completions and chats, streamed and not) runs through one router process. Every request must
// either succeed or get a clear error (an OpenAI-format error answer); none may hang past the
// router's total timeout. A stream whose engine dies mid-answer must move to another engine: while
// another engine of the model is alive (always, here: one fault at a time among four engines) no
// stream may end with an error event. The engines answer with a toy model whose every token is a
// function of the whole context (bench/support/context-model.ts), so each answer — migrated or not — is
// checked against the unbroken one: no duplicate or missing text, one [DONE]. Exit 1 otherwise.
// Not part of npm test.
//   node --import tsx bench/router/chaos.ts [--duration 600] [--engines 4] [--concurrency 32] [--every 8]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { Agent, request } from "undici";
import { stringify } from "yaml";
import { freePort } from "../support/cli.js";
import { expectedAnswer } from "../support/context-model.js";
import { waitHttp } from "../support/router-harness.js";

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

type Outcome = "ok" | "clear-error" | "stream-error" | "wrong-text" | "cut" | "unclear-error" | "hung";

function startEngine(port: number): ChildProcess {
  return spawn(
    process.execPath,
    [...process.execArgv, here("../support/fakes/tenancy-upstream"), String(port), "20", "--context"],
    { stdio: ["ignore", "ignore", "inherit"] },
  );
}

/** One streamed answer read whole: its text, [DONE]s, error events. */
function readSse(text: string, chat: boolean): { text: string; dones: number; errors: string[] } {
  let out = "";
  let dones = 0;
  const errors: string[] = [];
  for (const ev of text.split("\n\n")) {
    if (!ev.startsWith("data: ")) continue;
    const data = ev.slice(6);
    if (data === "[DONE]") {
      dones++;
      continue;
    }
    const doc = JSON.parse(data) as {
      error?: { message?: string };
      choices?: { text?: string; delta?: { content?: string } }[];
    };
    if (doc.error) errors.push(doc.error.message ?? "");
    for (const c of doc.choices ?? []) out += (chat ? c.delta?.content : c.text) ?? "";
  }
  return { text: out, dones, errors };
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
      here("../../src/cli/main"),
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
        const n = seq++;
        const stream = n % 4 < 2;
        const chat = n % 2 === 1;
        const maxTokens = 10 + (n % 90);
        const body: Record<string, unknown> = chat
          ? {
              model: "bench/m",
              messages: [{ role: "user", content: `question ${n}` }],
              max_tokens: maxTokens,
            }
          : { model: "bench/m", prompt: `prompt ${n}`, max_tokens: maxTokens };
        const want = expectedAnswer(body, chat, maxTokens);
        const t0 = performance.now();
        const ac = new AbortController();
        const guard = setTimeout(() => ac.abort(), TOTAL_MS + CLIENT_GRACE_MS);
        try {
          const r = await request(`${url}${chat ? "/v1/chat/completions" : "/v1/completions"}`, {
            method: "POST",
            dispatcher: agent,
            signal: ac.signal,
            headers: { "content-type": "application/json" },
            body: JSON.stringify({ ...body, stream }),
            headersTimeout: 0,
            bodyTimeout: 0,
          });
          const text = await r.body.text();
          const ms = performance.now() - t0;
          if (r.statusCode !== 200) {
            const clear = /^\{"error":\{"message":/.test(text);
            const msg = /"message":"([^"]{0,60})/.exec(text)?.[1] ?? "";
            note(clear ? "clear-error" : "unclear-error", `status ${r.statusCode} ${msg}`, ms);
          } else if (stream) {
            const got = readSse(text, chat);
            if (got.errors.length > 0) note("stream-error", got.errors[0]!.slice(0, 120), ms);
            else if (got.dones !== 1 || !text.endsWith("data: [DONE]\n\n"))
              note("cut", `stream with ${got.dones} [DONE]`, ms);
            else if (got.text !== want)
              note(
                "wrong-text",
                `${got.text.length}/${want.length} chars, ${chat ? "chat" : "completion"}`,
                ms,
              );
            else note("ok", "", ms);
          } else {
            try {
              const doc = JSON.parse(text) as {
                choices: { text?: string; message?: { content?: string } }[];
              };
              const c = doc.choices[0]!;
              if ((chat ? c.message?.content : c.text) === want) note("ok", "", ms);
              else note("wrong-text", "JSON answer", ms);
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
    const metrics = await (await fetch(`${url}/metrics`)).text();
    console.log("migrations (switchyard_migrations_total, by reason and outcome):");
    for (const m of metrics.matchAll(/^switchyard_migrations_total\{model="[^"]*",(.*)\} (\d+)$/gm))
      console.log(`  ${m[2]}\t${m[1]}`);
    const gap = /^switchyard_migration_seconds_sum\{[^}]*\} (\S+)$/m.exec(metrics);
    const gapN = /^switchyard_migration_seconds_count\{[^}]*\} (\S+)$/m.exec(metrics);
    if (gap && gapN && Number(gapN[1]) > 0)
      console.log(
        `migration gap (break → first byte from the next engine): mean ${((Number(gap[1]) / Number(gapN[1])) * 1000).toFixed(1)} ms over ${gapN[1]}`,
      );
    const bad = (counts.get("cut") ?? 0) + (counts.get("unclear-error") ?? 0) + (counts.get("hung") ?? 0);
    const wrong = counts.get("wrong-text") ?? 0;
    const streamErrors = counts.get("stream-error") ?? 0;
    if (bad + wrong + streamErrors > 0) {
      console.log(
        `FAIL: ${bad} requests neither succeeded nor got a clear error, ${wrong} answers differ from the unbroken ones, ` +
          `${streamErrors} streams ended with an error event while other engines were alive`,
      );
      process.exitCode = 1;
    } else
      console.log(
        "PASS: every request succeeded or got a clear error; every answer is the unbroken one; no stream ended with an error event; none hung",
      );
  } finally {
    await agent.close().catch(() => undefined);
    router.kill("SIGKILL");
    for (const p of procs) p?.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

void main();
