// Routing quality against vllm-router, live, on the same engines: per shape and round, every target gets
// four fresh `switchyard sim` engines (KV events on, Llama-3.1-8B on L4, 16k context), its router in
// front of them, and the same `switchyard bench` workload through it. Targets: our policies
// (`sy-predictive`, `sy-prefix`, `sy-round-robin`, ...) and vllm-router 0.1.17 (PyPI, the peers cache)
// with `cache_aware` (its default) and `kv_aware` (fed by the sims' KV events). Targets run interleaved
// within a round, so a busy host moves them alike. Each figure is the median over rounds (and seeds);
// ratios are to round-robin and to vllm-router's best target per shape (throughput up, TTFT p50/p90
// down).
//   node dist/bench/routing/vs-peers.js [--shapes kv-pressure,...] [--targets sy-predictive,vr-cache_aware,...]
//     [--rounds 3] [--seed N | --seeds 0,1,2] [--json FILE] [--out-dir DIR] [--router-log-level debug]
// Several seeds (arrivals and prompts) are each run every round and pooled: on a shape past the fleet's
// capacity one placement that differs (a miss sent beside other tenants' prefixes) can make the rest of
// a run's TTFTs differ by 3x, so one seed's ordering of policies is one trajectory of many.
// At debug log level our router writes a line per decision, and each run of ours prints its decisions
// summed up (bench/support/decision-table.ts): predicted against observed TTFT by the picked engine's KV in use,
// and the router's holds.
// Shapes: kv-pressure (40 groups x 6 prompts, 3,000-token shared prompt, 600-token question, 64 output
// tokens, Poisson 6 req/s: the groups' prefixes fill the fleet's KV), kv-pressure-light (the same at
// 4 req/s), kv-half (20 groups: half the fleet's KV), multi-tenant (llm-d's multi-tenant shape scaled
// to four engines: 18 tenants x 12 prompts, 4,500-token system prompt, 1,500-token question, Poisson
// 3 req/s), multi-round-qa-N (N users x 4 rounds, 1k shared system prompt + 4k history, every user
// active), agentic-b2b (agent sessions paused on tools between turns: routing-vs-peers-shapes.ts).
// Agentic shapes also report input tok/s and resumed turns' TTFT. trace-conversation(-1.5x): five
// minutes of Mooncake's conversation trace replayed at its times (--trace-dir holds the file).
// --tiered: the same four sims share one `switchyard cache-server` as their LMCache remote (each also
// keeps LMCache's local CPU tier), loading from it at --tier-bandwidth-gbps. Targets by default:
// sy-predictive told what the server holds (its KV events: tier-aware), sy-predictive@tier-blind (the
// same router without them), sy-round-robin and vr-cache_aware on the same tiered sims. `@tier-blind`
// works on any target of ours. --engines-per-server N: a cache server per N sims (a server per node), the
// router told which sims load from which (routing.cacheServers[].engines).
import type { ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { freePort } from "../support/cli.js";
import { runBench, startStack, stop, waitHttp } from "./live.js";
import { decisionTable, rowsFromRouterLog } from "../support/decision-table.js";
import { startLogged, vllmRouterBin } from "../support/peer-tools.js";
import { SHAPES, benchArgs, shapeOf } from "../support/routing-vs-peers-shapes.js";
import { median } from "../../src/workload/stats.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const GPU = "l4";
const SIM_ARGS = ["--gpu", GPU, "--max-model-len", "16384"];

const specs: FlagSpecs = {
  shapes: {
    type: "string",
    default: "kv-pressure,kv-pressure-light,kv-half,multi-tenant",
    help: Object.keys(SHAPES).join(", "),
  },
  targets: {
    type: "string",
    default: "sy-predictive,sy-prefix,sy-round-robin,vr-cache_aware,vr-kv_aware",
    help: "sy-<policy>[@<router flag>=<value>...] (ours), vr-<policy> (vllm-router 0.1.17)",
  },
  rounds: { type: "int", default: 3, help: "" },
  seed: { type: "int", default: 0, help: "the bench's seed (prompts, arrivals): the same for every target" },
  seeds: {
    type: "string",
    help: "several seeds, each run every round (figures: the median over rounds and seeds); overrides --seed",
  },
  json: { type: "string", help: "also write the rows here" },
  "router-log-level": {
    type: "string",
    default: "warn",
    help: "debug: one line per routing decision, and our targets' decisions summed up after each run",
  },
  "out-dir": { type: "string", help: "logs and bench results (default: a temporary folder)" },
  tiered: {
    type: "boolean",
    default: false,
    help: "the sims share one cache server (LMCache remote); our routers subscribe to its KV events unless a target says @tier-blind",
  },
  "tier-bandwidth-gbps": {
    type: "number",
    default: 80,
    min: 0.001,
    help: "with --tiered: Gbit/s of each sim's link to the cache server (80: the sims' default 10 GB/s)",
  },
  "engines-per-server": {
    type: "int",
    min: 1,
    help: "with --tiered: a cache server per this many sims (a server per node; default: one for all)",
  },
  "trace-dir": {
    type: "string",
    default: "traces",
    help: "where the trace shapes' files are (Mooncake's FAST25-release/traces)",
  },
};
const { flags, given } = benchFlags(specs);
const tiered = flags.tiered === true;
/** the targets --tiered compares by default */
const TIERED_TARGETS = "sy-predictive,sy-predictive@tier-blind,sy-round-robin,vr-cache_aware";
const shapes = String(flags.shapes).split(",");
const seeds = flags.seeds !== undefined ? String(flags.seeds).split(",").map(Number) : [Number(flags.seed)];
if (seeds.length === 0 || seeds.some((s) => !Number.isInteger(s) || s < 0))
  throw new Error(`bad --seeds ${flags.seeds}`);
const targets = String(tiered && !given.has("targets") ? TIERED_TARGETS : flags.targets).split(",");
for (const s of shapes) shapeOf(s);
for (const t of targets)
  if (!/^(sy|vr)-[a-z_-]+(@[a-z-]+(=[^@,]*)?)*$/.test(t)) throw new Error(`bad target ${t}`);
const outDir = flags["out-dir"] ? String(flags["out-dir"]) : mkdtempSync(join(tmpdir(), "routing-vs-peers-"));
mkdirSync(outDir, { recursive: true });
const vr = targets.some((t) => t.startsWith("vr-")) ? vllmRouterBin() : "";

interface Figures {
  tps: number;
  p50: number;
  p90: number;
  failed: number;
  /** input tokens/s, and resumed turns' TTFT (agentic shapes) */
  inTps: number;
  resumedP50?: number | undefined;
  resumedP90?: number | undefined;
}

/** a target suffix that is no router flag: the router is not told what the shared tier holds */
const TIER_BLIND = "tier-blind";
if (!tiered && flags["engines-per-server"] !== undefined)
  throw new Error("--engines-per-server needs --tiered");
if (!tiered && targets.some((t) => t.split("@").includes(TIER_BLIND)))
  throw new Error(`@${TIER_BLIND} needs --tiered`);

/** the router flags a target of ours names after its policy: `@flag=value` each */
function routerFlagsOf(target: string): string[] {
  return target
    .split("@")
    .slice(1)
    .filter((f) => f !== TIER_BLIND)
    .flatMap((f) => {
      const eq = f.indexOf("=");
      return eq < 0 ? [`--${f}`] : [`--${f.slice(0, eq)}`, f.slice(eq + 1)];
    });
}

/** one run: fresh engines, the target's router, the shape's bench */
async function runOnce(shape: string, target: string, round: number, seed: number): Promise<Figures> {
  const tag = `${shape}${tiered ? "-tiered" : ""}${seeds.length > 1 ? `-s${seed}` : ""}-${target}-r${round}`;
  const ours = target.startsWith("sy-");
  const stack = await startStack({
    outDir,
    tag,
    engines: 4,
    model: MODEL,
    simArgs: SIM_ARGS,
    policy: ours ? target.slice(3).split("@")[0]! : "round-robin",
    // the engines' GPU, as `switchyard up --gpu` tells its router (predictive's time model); a target
    // `sy-<policy>@<flag>=<value>[@...]` adds router flags (sy-predictive@predictive-queued-prompts=0)
    routerArgs: ["--predictive-gpu", GPU, ...(ours ? routerFlagsOf(target) : [])],
    noRouter: !ours,
    routerLogLevel: String(flags["router-log-level"]),
    ...(tiered
      ? {
          cacheServer: {
            bandwidthGbps: Number(flags["tier-bandwidth-gbps"]),
            routerSeesIt: !target.split("@").includes(TIER_BLIND),
            enginesPerServer: flags["engines-per-server"] as number | undefined,
          },
        }
      : {}),
  });
  let peer: ChildProcess | undefined;
  let figures: Figures;
  try {
    let url = stack.routerUrl;
    if (!ours) {
      const port = await freePort();
      const args = ["--host", "127.0.0.1", "--port", String(port), "--policy", target.slice(3)];
      args.push("--worker-urls", ...stack.urls, "--worker-startup-check-interval", "1");
      args.push("--prometheus-port", String(await freePort()));
      if (target === "vr-kv_aware") {
        stack.urls.forEach((u, i) => {
          args.push("--kv-event-source", `${u}=tcp://127.0.0.1:${stack.kvPort + i}`);
          args.push("--kv-event-replay-source", `${u}=tcp://127.0.0.1:${stack.kvPort + 1000 + i}`);
        });
        args.push("--kv-event-model", MODEL, "--kv-event-block-size", "16");
      }
      peer = startLogged(vr, args, join(outDir, `${tag}-vllm-router.log`));
      url = `http://127.0.0.1:${port}`;
      await waitHttp(`${url}/health`);
      await new Promise((r) => setTimeout(r, 1500)); // its workers' startup checks, subscriptions
    }
    const file = join(outDir, `${tag}.json`);
    const args = [
      "--base-url",
      url,
      "--model",
      MODEL,
      "--seed",
      String(seed),
      ...benchArgs(shapeOf(shape), String(flags["trace-dir"])),
    ];
    await runBench(outDir, tag, args, file);
    const j = JSON.parse(readFileSync(file, "utf8")) as Record<string, number> & {
      resumed?: { resumed_ttft_p50_ms: number; resumed_ttft_p90_ms: number } | null;
    };
    figures = {
      tps: j.output_throughput!,
      p50: j.median_ttft_ms!,
      p90: j.p90_ttft_ms!,
      failed: j.failed ?? 0,
      inTps: j.total_input_tokens! / j.duration!,
      resumedP50: j.resumed?.resumed_ttft_p50_ms,
      resumedP90: j.resumed?.resumed_ttft_p90_ms,
    };
  } finally {
    if (peer) await stop(peer);
    await stack.close();
  }
  // the router's decisions, as the fleet simulator's are summed up (routing-vs-peers-virtual --decisions)
  if (ours && flags["router-log-level"] === "debug") {
    const rows = rowsFromRouterLog(readFileSync(join(outDir, `${tag}-router.log`), "utf8"));
    console.log(`${tag}: the router's decisions\n${decisionTable(rows).join("\n")}`);
  }
  return figures;
}

const resumedText = (f: Figures) =>
  f.resumedP50 !== undefined
    ? `, ${f.inTps.toFixed(0)} input tok/s, resumed TTFT p50 ${f.resumedP50.toFixed(0)} ms, p90 ${(f.resumedP90 ?? NaN).toFixed(0)} ms`
    : "";

const results = new Map<string, Figures[]>();
/** the runs of every target so far: each turn of targets starts one further on */
let turn = 0;
for (let round = 0; round < Number(flags.rounds); round++)
  for (const shape of shapes)
    for (const seed of seeds) {
      // interleaved, and in a rotated order each turn, so no target always runs first or last
      const order = targets.map((_, i) => targets[(i + turn) % targets.length]!);
      turn++;
      for (const target of order) {
        const f = await runOnce(shape, target, round, seed);
        const key = `${shape}|${target}`;
        results.set(key, [...(results.get(key) ?? []), f]);
        console.log(
          `round ${round + 1}${seeds.length > 1 ? ` seed ${seed}` : ""} ${shape} ${target}: ${f.tps.toFixed(1)} tok/s, TTFT p50 ${f.p50.toFixed(0)} ms, p90 ${f.p90.toFixed(0)} ms${resumedText(f)}${f.failed ? `, ${f.failed} failed` : ""}`,
        );
      }
    }

interface Row {
  shape: string;
  target: string;
  /** runs the figures are the median of (rounds x seeds) */
  runs: number;
  output_tps: number;
  ttft_p50_ms: number;
  ttft_p90_ms: number;
  input_tps: number;
  resumed_ttft_p50_ms?: number;
  resumed_ttft_p90_ms?: number;
  failed: number;
  vs_round_robin?: { tps: number; p50: number; p90: number };
  vs_vllm_router_best?: { tps: number; p50: number; p90: number };
}
const rows: Row[] = [];
for (const shape of shapes) {
  const med = (t: string): Row | undefined => {
    const fs = results.get(`${shape}|${t}`);
    if (!fs) return undefined;
    return {
      shape,
      target: t,
      runs: fs.length,
      output_tps: median(fs.map((f) => f.tps)),
      ttft_p50_ms: median(fs.map((f) => f.p50)),
      ttft_p90_ms: median(fs.map((f) => f.p90)),
      input_tps: median(fs.map((f) => f.inTps)),
      ...(fs.every((f) => f.resumedP50 !== undefined)
        ? {
            resumed_ttft_p50_ms: median(fs.map((f) => f.resumedP50!)),
            resumed_ttft_p90_ms: median(fs.map((f) => f.resumedP90 ?? NaN)),
          }
        : {}),
      failed: fs.reduce((a, f) => a + f.failed, 0),
    };
  };
  const all = targets.map(med).filter((r): r is Row => r !== undefined);
  const rr = all.find((r) => r.target === "sy-round-robin");
  const peers = all.filter((r) => r.target.startsWith("vr-"));
  // vllm-router's best per figure (its best policy may differ between figures)
  const best = peers.length
    ? {
        tps: Math.max(...peers.map((r) => r.output_tps)),
        p50: Math.min(...peers.map((r) => r.ttft_p50_ms)),
        p90: Math.min(...peers.map((r) => r.ttft_p90_ms)),
      }
    : undefined;
  for (const r of all) {
    if (rr)
      r.vs_round_robin = {
        tps: r.output_tps / rr.output_tps,
        p50: rr.ttft_p50_ms / r.ttft_p50_ms,
        p90: rr.ttft_p90_ms / r.ttft_p90_ms,
      };
    if (best)
      r.vs_vllm_router_best = {
        tps: r.output_tps / best.tps,
        p50: best.p50 / r.ttft_p50_ms,
        p90: best.p90 / r.ttft_p90_ms,
      };
    rows.push(r);
  }
}

const x = (v: number | undefined) => (v === undefined ? "—" : `${v.toFixed(2)}×`);
console.log(
  `\n${tiered ? `tiered (${flags["engines-per-server"] !== undefined ? `a cache server per ${String(flags["engines-per-server"])} sims` : "4 sims sharing one cache server"} at ${String(flags["tier-bandwidth-gbps"])} Gbit/s), ` : ""}median of ${String(flags.rounds)} rounds${seeds.length > 1 ? ` x ${seeds.length} seeds` : ""} (ratios: higher is better; TTFT ratios are theirs / ours)`,
);
console.log(
  "| shape | target | output tok/s | TTFT p50 ms | TTFT p90 ms | vs round-robin (tok/s, p50, p90) | vs vllm-router's best (tok/s, p50, p90) |",
);
console.log("|---|---|---|---|---|---|---|");
for (const r of rows)
  console.log(
    `| ${r.shape} | ${r.target} | ${r.output_tps.toFixed(1)} | ${r.ttft_p50_ms.toFixed(0)} | ${r.ttft_p90_ms.toFixed(0)} | ${x(r.vs_round_robin?.tps)} ${x(r.vs_round_robin?.p50)} ${x(r.vs_round_robin?.p90)} | ${x(r.vs_vllm_router_best?.tps)} ${x(r.vs_vllm_router_best?.p50)} ${x(r.vs_vllm_router_best?.p90)} |`,
  );
// what knowing the shared tier changes: each tier-aware target against the same target blind to it
for (const blind of rows.filter((r) => r.target.split("@").includes(TIER_BLIND))) {
  const awareTarget = blind.target
    .split("@")
    .filter((f) => f !== TIER_BLIND)
    .join("@");
  const aware = rows.find((r) => r.shape === blind.shape && r.target === awareTarget);
  if (aware)
    console.log(
      `${blind.shape} ${awareTarget}, tier-aware vs tier-blind (higher is better; TTFT: blind / aware): tok/s ${x(aware.output_tps / blind.output_tps)}, TTFT p50 ${x(blind.ttft_p50_ms / aware.ttft_p50_ms)}, p90 ${x(blind.ttft_p90_ms / aware.ttft_p90_ms)}`,
    );
}
const agentRows = rows.filter((r) => r.resumed_ttft_p50_ms !== undefined);
if (agentRows.length) {
  console.log(
    "\n| shape | target | input tok/s | resumed TTFT p50 ms | resumed TTFT p90 ms |\n|---|---|---|---|---|",
  );
  for (const r of agentRows)
    console.log(
      `| ${r.shape} | ${r.target} | ${r.input_tps.toFixed(0)} | ${r.resumed_ttft_p50_ms!.toFixed(0)} | ${r.resumed_ttft_p90_ms!.toFixed(0)} |`,
    );
}
if (flags.json)
  writeFileSync(
    String(flags.json),
    JSON.stringify(
      tiered ? { tiered: { bandwidthGbps: Number(flags["tier-bandwidth-gbps"]) }, rows } : { rows },
      null,
      2,
    ),
  );
console.log(`logs and bench results: ${outDir}`);
