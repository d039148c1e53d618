// One enormous request must not take the stack down. Through `switchyard up --engines 2`: while
// 1M-word chat requests are sent one after another, a probe process polls the router's /health every
// 10 ms and keeps two small chat requests in flight; the same probing runs on an idle stack first.
// Reports /health p99/max, small-request p99 against the idle p99, the huge requests' answers and how
// long they took, engine ejections; then a 25 MB body (Content-Length announced, and chunked): when
// its 413 arrives, how much had been sent, and the router's RSS. Not part of npm test.
//   node --import tsx bench/router/huge-prompt.ts [--rounds 2] [--words 1000000] [--huge 5] [--model M]
import { spawn } from "node:child_process";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import { WORDS } from "../../src/workload/text.js";
import { mulberry32 } from "../../src/random/rng.js";
import { metricSum, metrics, rssMiB, startStack, type Stack } from "../support/stack.js";
import { percentile } from "../../src/workload/stats.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);

interface Sample {
  at: number;
  ms: number;
  status: number;
}

// ---- the probe process: /health every 10 ms, two small chats in a closed loop ------------------

async function probe(url: string, durationMs: number, model: string): Promise<void> {
  const pool = new Pool(url, { connections: 4 });
  const end = Date.now() + durationMs;
  const health: Sample[] = [];
  const small: Sample[] = [];
  const body = JSON.stringify({ model, messages: [{ role: "user", content: "Say hello." }], max_tokens: 8 });
  const healthLoop = async () => {
    while (Date.now() < end) {
      const at = Date.now();
      const t = performance.now();
      let status = 0;
      try {
        const r = await pool.request({ path: "/health", method: "GET" });
        await r.body.dump();
        status = r.statusCode;
      } catch {
        status = -1;
      }
      health.push({ at, ms: performance.now() - t, status });
      await new Promise((r) => setTimeout(r, 10));
    }
  };
  const smallLoop = async () => {
    while (Date.now() < end) {
      const at = Date.now();
      const t = performance.now();
      let status = 0;
      try {
        const r = await pool.request({
          path: "/v1/chat/completions",
          method: "POST",
          headers: { "content-type": "application/json" },
          body,
        });
        await r.body.text();
        status = r.statusCode;
      } catch {
        status = -1;
      }
      small.push({ at, ms: performance.now() - t, status });
    }
  };
  await Promise.all([healthLoop(), smallLoop(), smallLoop()]);
  await pool.close();
  process.stdout.write(JSON.stringify({ health, small }));
}

// ---- the main process ---------------------------------------------------------------------------

function hugeBody(model: string, words: number): Buffer {
  const rand = mulberry32(42);
  const parts: string[] = new Array(words);
  for (let i = 0; i < words; i++) parts[i] = WORDS[Math.floor(rand() * WORDS.length)]!;
  return Buffer.from(JSON.stringify({ model, messages: [{ role: "user", content: parts.join(" ") }] }));
}

function runProbe(
  url: string,
  durationMs: number,
  model: string,
): Promise<{ health: Sample[]; small: Sample[] }> {
  const self = fileURLToPath(import.meta.url);
  const child = spawn(
    process.execPath,
    [...process.execArgv, self, "probe", url, String(durationMs), model],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  let out = "";
  child.stdout.on("data", (b: Buffer) => (out += b.toString("utf8")));
  return new Promise((resolve, reject) =>
    child.once("exit", (code) =>
      code === 0
        ? resolve(JSON.parse(out) as { health: Sample[]; small: Sample[] })
        : reject(new Error(`probe ${code}`)),
    ),
  );
}

const within = (xs: Sample[], from: number, to: number) => xs.filter((s) => s.at >= from && s.at <= to);
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : "—");

/** Sends a body of `total` bytes (announced or chunked) as fast as the socket takes it; resolves at the answer. */
function bigBody(
  url: string,
  total: number,
  chunked: boolean,
): Promise<{ status: string; ms: number; sentMiB: number }> {
  return new Promise((resolve) => {
    const u = new URL(url);
    const sock = connect(Number(u.port), u.hostname);
    const t0 = performance.now();
    let sent = 0;
    let answer = "";
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      resolve({
        status: answer.split("\r\n")[0] ?? "(none)",
        ms: performance.now() - t0,
        sentMiB: sent / 2 ** 20,
      });
      sock.destroy();
    };
    sock.on("data", (b: Buffer) => {
      answer += b.toString("latin1");
      if (answer.includes("\r\n\r\n")) finish();
    });
    sock.on("error", finish);
    sock.on("close", finish);
    const head =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
      (chunked ? "Transfer-Encoding: chunked\r\n\r\n" : `Content-Length: ${total}\r\n\r\n`);
    sock.write(head);
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    const pump = () => {
      while (!done && sent < total) {
        const piece = chunked
          ? Buffer.concat([Buffer.from(`${chunk.length.toString(16)}\r\n`), chunk, Buffer.from("\r\n")])
          : chunk;
        sent += chunk.length;
        if (!sock.write(piece)) return void sock.once("drain", pump);
      }
    };
    pump();
  });
}

async function round(
  stack: Stack,
  model: string,
  words: number,
  hugeCount: number,
  n: number,
): Promise<void> {
  const url = stack.url;
  const body = hugeBody(model, words);
  const before = await metrics(url);
  const idleMs = 8_000;
  const probeMs = idleMs + 40_000;
  const t0 = Date.now();
  const probing = runProbe(url, probeMs, model);
  await new Promise((r) => setTimeout(r, idleMs));
  const hugeStart = Date.now();
  const answers: string[] = [];
  const took: number[] = [];
  const pool = new Pool(url, { connections: 1 });
  for (let i = 0; i < hugeCount; i++) {
    const t = performance.now();
    const r = await pool.request({
      path: "/v1/chat/completions",
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    });
    const text = await r.body.text();
    took.push(performance.now() - t);
    answers.push(`${r.statusCode} ${text.slice(0, 160)}`);
  }
  const hugeEnd = Date.now();
  await pool.close();
  const { health, small } = await probing;
  const after = await metrics(url);
  const idleH = within(health, t0 + 1000, hugeStart).map((s) => s.ms);
  const hugeH = within(health, hugeStart, hugeEnd).map((s) => s.ms);
  const idleS = within(small, t0 + 1000, hugeStart);
  const hugeS = within(small, hugeStart, hugeEnd);
  const failed = (xs: Sample[]) => xs.filter((s) => s.status !== 200).length;
  const ejections =
    metricSum(after, "switchyard_engine_ejections_total") -
    metricSum(before, "switchyard_engine_ejections_total");
  console.log(
    `round ${n}: ${hugeCount} chat requests of ${words} words (${(body.length / 2 ** 20).toFixed(1)} MiB)`,
  );
  console.log(`  answers      ${[...new Set(answers)].join("\n               ")}`);
  console.log(
    `  answer time  ${took.map((x) => (x / 1000).toFixed(2)).join(", ")} s (max ${(Math.max(...took) / 1000).toFixed(2)} s)`,
  );
  console.log(
    `  /health      idle p50 ${f1(percentile(idleH, 50))} p99 ${f1(percentile(idleH, 99))} max ${f1(Math.max(...idleH))} ms (n ${idleH.length}); ` +
      `during p50 ${f1(percentile(hugeH, 50))} p99 ${f1(percentile(hugeH, 99))} max ${f1(Math.max(...hugeH))} ms (n ${hugeH.length})`,
  );
  const ip99 = percentile(
    idleS.map((s) => s.ms),
    99,
  );
  const hp99 = percentile(
    hugeS.map((s) => s.ms),
    99,
  );
  console.log(
    `  small chats  idle p50 ${f1(
      percentile(
        idleS.map((s) => s.ms),
        50,
      ),
    )} p99 ${f1(ip99)} ms (n ${idleS.length}, failed ${failed(idleS)}); ` +
      `during p50 ${f1(
        percentile(
          hugeS.map((s) => s.ms),
          50,
        ),
      )} p99 ${f1(hp99)} ms (n ${hugeS.length}, failed ${failed(hugeS)}); ratio ${(hp99 / ip99).toFixed(2)}`,
  );
  console.log(
    `  ejections    ${ejections}; engines healthy: ${metricSum(after, "switchyard_engine_healthy")}`,
  );
}

async function main(): Promise<void> {
  const rounds = Number(get("--rounds", "2"));
  const words = Number(get("--words", "1000000"));
  const hugeCount = Number(get("--huge", "5"));
  const model = get("--model", "meta-llama/Llama-3.1-8B-Instruct");
  const stack = await startStack(2, ["--model", model]);
  try {
    console.log(
      `stack up at ${stack.url} (2 engines, ${model}); router RSS ${rssMiB(stack.routerPid).toFixed(0)} MiB`,
    );
    for (let n = 1; n <= rounds; n++) await round(stack, model, words, hugeCount, n);
    for (const chunked of [false, true]) {
      const rssBefore = rssMiB(stack.routerPid);
      const r = await bigBody(stack.url, 25 * 1000 * 1000, chunked);
      console.log(
        `25 MB body (${chunked ? "chunked" : "Content-Length"}): "${r.status}" after ${r.ms.toFixed(0)} ms, ` +
          `${r.sentMiB.toFixed(1)} MiB sent by then; router RSS ${rssBefore.toFixed(0)} → ${rssMiB(stack.routerPid).toFixed(0)} MiB`,
      );
    }
    const health = await fetch(`${stack.url}/health`);
    console.log(`router /health after: ${health.status}`);
  } finally {
    await stack.stop();
  }
}

if (process.argv[2] === "probe") void probe(process.argv[3]!, Number(process.argv[4]), process.argv[5]!);
else void main();
