// A CPU-starved host must not lose the fleet. Four sims behind the router (`switchyard up --engines
// 4`), a busy-loop child per core for the whole run, and a multi-round QA load through `switchyard
// bench` meanwhile: counts engine ejections (and the probe timeouts the router excused, withheld
// ejections, panic-routed requests) and failed requests. Exit 1 when an engine was ejected or a request
// failed. Not part of npm test.
//   node --import tsx bench/router/cpu-starved.ts [--duration 120] [--users 16] [--hogs N] [--model M]
//     [--system 2000] [--history 12000] (multi-round QA: shared system prompt, each user's history, tokens)
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { metricSum, metrics, rssMiB, startStack } from "../support/stack.js";

const argv = process.argv.slice(2);
const get = (f: string, d: string) => (argv.includes(f) ? argv[argv.indexOf(f) + 1]! : d);
const durationS = Number(get("--duration", "120"));
const users = Number(get("--users", "16"));
const hogCount = Number(get("--hogs", String(availableParallelism())));
const model = get("--model", "meta-llama/Llama-3.1-8B-Instruct");
// long conversations: every request's prompt is tokenised by the router (cache-aware routing) and by
// its engine, which is where a starved host would lose its probes
const systemTokens = get("--system", "2000");
const historyTokens = get("--history", "12000");

const ext = import.meta.url.endsWith(".ts") ? ".ts" : ".js";
const main = fileURLToPath(new URL(`../../src/cli/main${ext}`, import.meta.url));

/** A child that keeps one core busy until killed. */
function hog(): ChildProcess {
  return spawn(process.execPath, ["-e", "for (;;) {}"], { stdio: "ignore" });
}

/** The numbers of a bench --out file, wherever they sit in it. */
function find(doc: unknown, key: string): unknown {
  if (!doc || typeof doc !== "object") return undefined;
  const o = doc as Record<string, unknown>;
  if (key in o) return o[key];
  for (const v of Object.values(o)) {
    const got = find(v, key);
    if (got !== undefined) return got;
  }
  return undefined;
}

const COUNTERS: Array<[string, string]> = [
  ["ejections", "switchyard_engine_ejections_total"],
  ["ejections withheld", "switchyard_engine_ejections_withheld_total"],
  ["probe timeouts excused", "switchyard_health_probe_timeouts_excused_total"],
  ["panic-routed requests", "switchyard_panic_routed_requests_total"],
  ["poison requests", "switchyard_poison_requests_total"],
  ["retries", "switchyard_retries_total"],
];

async function run(): Promise<void> {
  const stack = await startStack(4, ["--model", model]);
  const dir = mkdtempSync(join(tmpdir(), "sy-starved-"));
  const out = join(dir, "bench.json");
  const hogs: ChildProcess[] = [];
  try {
    const before = await metrics(stack.url);
    console.log(
      `stack up at ${stack.url}: 4 engines (${model}); ${hogCount} busy-loop children for ${durationS} s; ` +
        `multi-round QA, ${users} users (system ${systemTokens}, history ${historyTokens} tokens); load average before ${loadavg()[0]!.toFixed(1)}`,
    );
    for (let i = 0; i < hogCount; i++) hogs.push(hog());
    const t0 = Date.now();
    const loads: number[] = [];
    const sampler = setInterval(() => loads.push(loadavg()[0]!), 5000);
    const bench = spawn(
      process.execPath,
      [
        ...process.execArgv,
        main,
        "bench",
        "--base-url",
        stack.url,
        "--model",
        model,
        "--workload",
        "multi-round-qa",
        "--num-users",
        String(users),
        "--num-rounds",
        "1000",
        "--shared-system-prompt",
        systemTokens,
        "--user-history-prompt",
        historyTokens,
        "--concurrency",
        String(users),
        "--duration",
        String(durationS),
        // every answer runs to its max_tokens: a stream that ends on EOS at once is not a failure
        // to vllm bench serve, but the bench's no_output would count it as one
        "--ignore-eos",
        "--no-calibrate",
        "--no-progress",
        "--out",
        out,
      ],
      { stdio: ["ignore", "inherit", "inherit"] },
    );
    await new Promise<void>((r) => bench.once("exit", () => r()));
    clearInterval(sampler);
    const took = (Date.now() - t0) / 1000;
    for (const h of hogs) h.kill("SIGKILL");
    const after = await metrics(stack.url);
    const doc = JSON.parse(readFileSync(out, "utf8")) as unknown;
    const completed = Number(find(doc, "completed") ?? NaN);
    const failed = Number(find(doc, "failed") ?? NaN);
    console.log(
      `\nload ran ${took.toFixed(0)} s; 1-min load average during: ${loads.map((l) => l.toFixed(1)).join(" ")}`,
    );
    console.log(
      `requests   ${completed} completed, ${failed} failed ${JSON.stringify(find(doc, "errors_by_kind") ?? {})}`,
    );
    const delta: Record<string, number> = {};
    for (const [label, name] of COUNTERS) {
      delta[label] = metricSum(after, name) - metricSum(before, name);
      console.log(`${label.padEnd(24)} ${delta[label]}`);
    }
    console.log(`engines in rotation at the end: ${metricSum(after, "switchyard_engine_healthy")} of 4`);
    console.log(`router RSS ${rssMiB(stack.routerPid).toFixed(0)} MiB`);
    if (delta.ejections! > 0 || failed > 0 || !(completed > 0)) {
      console.log("FAIL: an engine was ejected or a request failed");
      process.exitCode = 1;
    } else console.log("PASS: no engine ejected, no request failed");
  } finally {
    for (const h of hogs) h.kill("SIGKILL");
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

void run();
