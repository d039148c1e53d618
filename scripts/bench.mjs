#!/usr/bin/env node
// The one way to run a benchmark: `npm run bench -- GROUP/NAME [args ...]` builds the package (tsc is
// incremental: little to do when nothing changed) and runs GROUP/NAME.js under dist/bench with node. The
// arguments given replace the benchmark's default ones in the table below; a variant's fixed ones
// (10k-streams-h2c's upstream protocol) and node flags (--expose-gc) always apply.
//   npm run bench -- --list            the benchmarks, with what each runs by default
//   npm run bench -- --check           every table entry has its file, every file under bench/ is one
//   npm run bench -- NAME --no-build ...   skip the build (dist/ is current)
// bench/README.md says what each benchmark answers, how long it runs and where its figures are.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/**
 * name: GROUP/NAME as typed; file: bench/FILE.ts when not the name; node: flags for node; fixed: always
 * passed; defaults: passed when no arguments are given.
 * @type {{ name: string, file?: string, node?: string[], fixed?: string[], defaults?: string[] }[]}
 */
const BENCHMARKS = [
  { name: "micro/engine-step", defaults: ["2000", "1000"] },
  { name: "micro/kvevents" },
  { name: "micro/lru" },
  { name: "micro/tokenizer" },
  { name: "micro/tokenizer-turns" },
  { name: "micro/migration-ledger" },
  { name: "micro/session-identify" },
  { name: "micro/routing-indexes", node: ["--expose-gc"] },
  { name: "micro/agentic-sessions", node: ["--expose-gc"] },
  { name: "router/overhead" },
  { name: "router/instructions" },
  { name: "router/soak", defaults: ["--duration", "600"] },
  { name: "router/vs-peers" },
  { name: "router/10k-streams" },
  { name: "router/10k-streams-h2c", file: "router/10k-streams", fixed: ["--upstream-protocol", "h2c"] },
  { name: "router/chaos", defaults: ["--duration", "600"] },
  { name: "router/cpu-starved" },
  { name: "router/huge-prompt" },
  { name: "router/migration" },
  { name: "routing/compare" },
  { name: "routing/scale" },
  { name: "routing/virtual" },
  { name: "routing/vs-peers" },
  { name: "routing/vs-peers-virtual" },
  { name: "routing/range" },
  { name: "routing/range-live" },
  { name: "routing/late-binding" },
  { name: "routing/kv-hash-hold" },
  { name: "routing/agentic" },
  { name: "routing/lora" },
  { name: "routing/llm-d-code-gen" },
  { name: "autoscale/trace", file: "autoscale/trace/index", defaults: ["--virtual"] },
  { name: "fleet/speed" },
  { name: "fleet/fidelity", defaults: ["3"] },
  { name: "fleet/vs-live", defaults: ["160", "0.25"] },
  { name: "sim/fidelity" },
  { name: "sim/streams" },
  { name: "sim/disagg" },
  { name: "client/capacity" },
  { name: "client/sse-pacing" },
  { name: "tenancy/fairness" },
  { name: "tenancy/fuzz" },
  { name: "tenancy/overload", defaults: ["--duration", "15"] },
  { name: "tenancy/adapter-storm", defaults: ["--duration", "10"] },
  { name: "cacheserver/throughput" },
];

/** Modules under bench/ that benchmarks import or start, not benchmarks themselves. */
const PARTS = [
  "router/node-floor-proxy",
  "router/overhead-at-rate",
  "router/raw-relay-proxy",
  "routing/agentic-decisions",
  "routing/live",
  "routing/lora-live",
  "routing/lora-sweep",
  "routing/range-setup",
  "routing/stats",
];

const fileOf = (b) => b.file ?? b.name;

function list() {
  const width = Math.max(...BENCHMARKS.map((b) => b.name.length));
  for (const b of BENCHMARKS) {
    const args = [...(b.node ?? []), `dist/bench/${fileOf(b)}.js`, ...(b.fixed ?? []), ...(b.defaults ?? [])];
    console.log(`${b.name.padEnd(width)}  node ${args.join(" ")}`);
  }
}

function check() {
  const wrong = [];
  for (const b of BENCHMARKS) {
    if (!existsSync(join(root, "bench", `${fileOf(b)}.ts`)))
      wrong.push(`${b.name}: no bench/${fileOf(b)}.ts`);
  }
  const known = new Set([...BENCHMARKS.map(fileOf), ...PARTS]);
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) {
        if (relative(join(root, "bench"), p) !== "support") walk(p);
      } else if (name.endsWith(".ts")) {
        const rel = relative(join(root, "bench"), p).replace(/\.ts$/, "");
        if (!known.has(rel)) wrong.push(`bench/${rel}.ts: not in scripts/bench.mjs (a benchmark or a part)`);
      }
    }
  };
  walk(join(root, "bench"));
  for (const w of wrong) console.error(w);
  console.log(wrong.length === 0 ? `${BENCHMARKS.length} benchmarks, ${PARTS.length} parts: all found` : "");
  return wrong.length === 0;
}

const argv = process.argv.slice(2);
if (argv.length === 0 || argv[0] === "--help" || argv[0] === "-h") {
  console.log("usage: npm run bench -- GROUP/NAME [--no-build] [args ...]   (npm run bench -- --list)");
  process.exit(argv.length === 0 ? 1 : 0);
}
if (argv[0] === "--list") {
  list();
  process.exit(0);
}
if (argv[0] === "--check") process.exit(check() ? 0 : 1);

const name = argv[0];
const bench = BENCHMARKS.find((b) => b.name === name);
if (!bench) {
  console.error(`unknown benchmark ${name}; npm run bench -- --list names them`);
  process.exit(1);
}
let rest = argv.slice(1);
const build = !rest.includes("--no-build");
rest = rest.filter((a) => a !== "--no-build");
if (build) {
  const tsc = spawnSync(
    process.execPath,
    [join(root, "node_modules/typescript/bin/tsc"), "-p", join(root, "tsconfig.json")],
    { stdio: "inherit" },
  );
  if (tsc.status !== 0) process.exit(tsc.status ?? 1);
}
const args = [
  ...(bench.node ?? []),
  join(root, "dist/bench", `${fileOf(bench)}.js`),
  ...(bench.fixed ?? []),
  ...(rest.length > 0 ? rest : (bench.defaults ?? [])),
];
const run = spawnSync(process.execPath, args, { stdio: "inherit", cwd: root });
process.exit(run.status ?? 1);
