// Routing benchmark: 4 sim engines publishing KV events, multi-round QA whose users' contexts exceed one
// engine's KV cache but fit the fleet, one run per policy (fresh engines each time), through the router
// and measured with `switchyard bench`. Prints TTFT p50/p99, throughput, prefix-cache hit rate and the
// largest waiting queue any engine reached; then `switchyard bench compare` of round-robin vs session.
//   node --import tsx bench/routing-compare.ts [--policies round-robin,least-load,prefix,kv,session]
//     [--users 40] [--rounds 5] [--concurrency 40] [--time-scale 1] [--gpu-memory-utilization 0.3]
//     [--max-model-len 16384] [--model meta-llama/Llama-3.1-8B-Instruct] [--out-dir DIR]
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseFlags, type FlagSpecs } from "../src/cli/args.js";
import { freePort } from "../test/helpers/cli.js";

const specs: FlagSpecs = {
  policies: { type: "string", default: "round-robin,least-load,prefix,kv,session", help: "" },
  users: { type: "int", default: 40, help: "" },
  rounds: { type: "int", default: 5, help: "" },
  concurrency: { type: "int", default: 40, help: "" },
  "shared-system-prompt": { type: "int", default: 1000, help: "" },
  "user-history-prompt": { type: "int", default: 2000, help: "" },
  "answer-len": { type: "int", default: 100, help: "" },
  "time-scale": { type: "number", default: 1, help: "" },
  "gpu-memory-utilization": { type: "number", default: 0.3, help: "" },
  "max-model-len": { type: "int", default: 16384, help: "" },
  model: { type: "string", default: "meta-llama/Llama-3.1-8B-Instruct", help: "" },
  gpu: { type: "string", default: "h100", help: "" },
  engines: { type: "int", default: 4, help: "" },
  "out-dir": { type: "string", help: "" },
};
const { flags } = parseFlags(process.argv.slice(2), specs);
const here = fileURLToPath(new URL(".", import.meta.url));
const isTs = import.meta.url.endsWith(".ts");
const main = isTs ? join(here, "../src/cli/main.ts") : join(here, "../src/cli/main.js");
const pre = isTs ? ["--import", "tsx", main] : [main];
const outDir = (flags["out-dir"] as string | undefined) ?? mkdtempSync(join(tmpdir(), "routing-compare-"));

function cli(args: string[], inherit = false): ChildProcess {
  return spawn(process.execPath, [...pre, ...args], {
    stdio: ["ignore", inherit ? "inherit" : "ignore", inherit ? "inherit" : "ignore"],
    env: { ...process.env, LOG_LEVEL: "warn" },
  });
}

async function waitHttp(url: string, ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await fetch(url);
      await r.arrayBuffer();
      if (r.ok) return;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${url} not ready`);
}

async function stop(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    c.once("exit", () => resolve());
    c.kill("SIGTERM");
    setTimeout(() => c.kill("SIGKILL"), 5000).unref();
  });
}

function gauge(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(name)) sum += Number(line.slice(line.lastIndexOf(" ") + 1)) || 0;
  return sum;
}

interface Row {
  policy: string;
  ttftP50: number;
  ttftP99: number;
  outTps: number;
  reqPs: number;
  hitRate: number;
  maxWaiting: number;
  failed: number;
  file: string;
}

async function runPolicy(policy: string): Promise<Row> {
  const n = flags.engines as number;
  const ports: number[] = [];
  const kvPort = 20000 + Math.floor(Math.random() * 20000);
  const procs: ChildProcess[] = [];
  for (let i = 0; i < n; i++) {
    const port = await freePort();
    ports.push(port);
    const kv = JSON.stringify({
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${kvPort + i}`,
      replay_endpoint: `tcp://*:${kvPort + 1000 + i}`,
    });
    procs.push(
      cli([
        "sim",
        flags.model as string,
        "--host",
        "127.0.0.1",
        "--port",
        String(port),
        "--gpu",
        flags.gpu as string,
        "--gpu-memory-utilization",
        String(flags["gpu-memory-utilization"]),
        "--max-model-len",
        String(flags["max-model-len"]),
        "--time-scale",
        String(flags["time-scale"]),
        "--kv-events-config",
        kv,
      ]),
    );
  }
  const urls = ports.map((p) => `http://127.0.0.1:${p}`);
  await Promise.all(urls.map((u) => waitHttp(`${u}/health`)));
  const rport = await freePort();
  const rargs = [
    "router",
    "--host",
    "127.0.0.1",
    "--port",
    String(rport),
    "--policy",
    policy === "session" ? "session" : policy,
  ];
  for (const u of urls) rargs.push("--backend", u);
  rargs.push(
    "--kv-events-port",
    String(kvPort),
    "--kv-events-replay-port",
    String(kvPort + 1000),
    "--kv-events-by-index",
  );
  if (policy === "session") rargs.push("--session-header", "x-user-id");
  const router = cli(rargs);
  procs.push(router);
  const rurl = `http://127.0.0.1:${rport}`;
  await waitHttp(`${rurl}/ready`);
  await new Promise((r) => setTimeout(r, 1500)); // scrapes, subscriptions
  let maxWaiting = 0;
  const sampler = setInterval(() => {
    for (const u of urls)
      void fetch(`${u}/metrics`)
        .then((r) => r.text())
        .then((t) => (maxWaiting = Math.max(maxWaiting, gauge(t, "vllm:num_requests_waiting"))))
        .catch(() => undefined);
  }, 1000);
  const file = join(outDir, `${policy}.json`);
  const bargs = [
    "bench",
    "--base-url",
    rurl,
    "--model",
    flags.model as string,
    "--workload",
    "multi-round-qa",
    "--num-users",
    String(flags.users),
    "--num-rounds",
    String(flags.rounds),
    "--concurrency",
    String(flags.concurrency),
    "--shared-system-prompt",
    String(flags["shared-system-prompt"]),
    "--user-history-prompt",
    String(flags["user-history-prompt"]),
    "--answer-len",
    String(flags["answer-len"]),
    "--seed",
    "1",
    "--out",
    file,
  ];
  for (const u of urls) bargs.push("--scrape", `${u}/metrics`);
  const bench = cli(bargs);
  const load: number[] = [];
  const cpu = setInterval(() => load.push(loadavg()[0]!), 5000);
  await new Promise((r) => bench.once("exit", r));
  clearInterval(sampler);
  clearInterval(cpu);
  for (const p of procs) await stop(p);
  const j = JSON.parse(readFileSync(file, "utf8")) as Record<string, unknown>;
  const server = (j.server ?? {}) as Record<string, unknown>;
  return {
    policy,
    ttftP50: j.median_ttft_ms as number,
    ttftP99: (j.p99_ttft_ms as number) ?? NaN,
    outTps: j.output_throughput as number,
    reqPs: j.request_throughput as number,
    hitRate: (server.prefix_cache_hit_rate as number) ?? NaN,
    maxWaiting,
    failed: j.failed as number,
    file,
  };
}

const rows: Row[] = [];
for (const p of (flags.policies as string).split(",")) {
  process.stderr.write(`running ${p} ...\n`);
  rows.push(await runPolicy(p));
  const r = rows[rows.length - 1]!;
  process.stderr.write(`${JSON.stringify(r)}\n`);
}
console.log(
  `\n4 engines, ${flags.users} users × ${flags.rounds} rounds, concurrency ${flags.concurrency}, results in ${outDir}`,
);
console.log(
  "| policy | TTFT p50 ms | TTFT p99 ms | output tok/s | req/s | prefix hit rate | max engine waiting | failed |",
);
console.log("|---|---|---|---|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.policy} | ${r.ttftP50.toFixed(0)} | ${r.ttftP99.toFixed(0)} | ${r.outTps.toFixed(1)} | ${r.reqPs.toFixed(2)} | ${(r.hitRate * 100).toFixed(1)}% | ${r.maxWaiting} | ${r.failed} |`,
  );
const rr = rows.find((r) => r.policy === "round-robin");
if (rr) {
  for (const r of rows)
    if (r !== rr)
      console.log(
        `${r.policy} vs round-robin: TTFT p50 ${(rr.ttftP50 / r.ttftP50).toFixed(2)}× lower, throughput ${(r.outTps / rr.outTps).toFixed(2)}×`,
      );
  const session = rows.find((r) => r.policy === "session");
  if (session) {
    const cmp = cli(["bench", "compare", rr.file, session.file], true);
    await new Promise((r) => cmp.once("exit", r));
  }
}
