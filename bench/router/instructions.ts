// The router's work per request counted in machine instructions, for comparing two builds where timings
// cannot: on a small shared machine one run of the router benchmarks spreads ±20% (CPU per request), so
// a few percent between builds is lost in it. Valgrind's callgrind counts every instruction the router's
// process executes (its JIT-compiled code, V8's collector and compiler threads included). Each build's
// router serves a fixed number of requests from bench/support/fakes/fast-upstream.ts twice, with two counts, and the
// difference over the extra requests is the work per request with start-up and warm-up cancelled out;
// warm-up is long for V8, so the smaller count should be well past it. A count is steadier than a
// timing but not immune to the machine: work that follows the clock rather than the requests (probes,
// timers) grows with a run's length, which valgrind's slowdown (about 50×) and a busy machine stretch,
// and V8's background threads (compiling, marking; over half the count on tiny requests) do as much as
// the scheduling lets them. One build's count per request has moved by up to 15% from run to run on a
// busy machine, and once by 30% on a quiet one. So the router's probes are put off for the run (QUIET),
// the builds alternate, and medians of several repeats on a quiet machine are what to compare. Needs
// valgrind (Debian's package); about a minute per run on the 2-core machine.
//   node dist/bench/router/instructions.js [--builds DIR,DIR] [--workload tiny|stream-256]
//     [--requests 250,850] [--repeats 2] [--policy least-load] [--functions N]
// DIR: a checkout with a built dist/ (default: this one); ratios are to the first. --functions N also
// splits out the instructions spent in the router's JavaScript, by function: callgrind sees JIT-compiled
// code only as addresses, so node writes V8's symbol map (--perf-basic-prof) and each address is named
// from it; the N functions whose count per request differs most from the first build's are listed
// (src/: the router's own code; the rest is undici's and node's JavaScript).
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Pool } from "undici";
import type { FlagSpecs } from "../../src/config/args.js";
import { benchFlags } from "../support/flags.js";
import { percentile } from "../../src/workload/stats.js";
import { freePort } from "../support/cli.js";
import { completionBody, postAndDrain, spawnUpstream, waitHttp } from "../support/router-harness.js";

const here = fileURLToPath(new URL("../../..", import.meta.url));
const specs: FlagSpecs = {
  builds: { type: "string", default: here, help: "checkouts with a built dist/, comma-separated" },
  workload: { type: "string", default: "stream-256", help: "tiny (1 token) or stream-256 (256 chunks)" },
  requests: { type: "string", default: "250,850", help: "the two request counts" },
  repeats: { type: "int", default: 2, min: 1, help: "runs of each count per build" },
  policy: { type: "string", default: "least-load", help: "the router's --policy" },
  functions: { type: "int", default: 0, min: 0, help: "list this many JavaScript functions (0: none)" },
};
const { flags } = benchFlags(specs);
const builds = String(flags.builds).split(",").filter(Boolean);
const stream = flags.workload === "stream-256";
if (!stream && flags.workload !== "tiny") throw new Error(`--workload: tiny or stream-256`);
const [n1, n2] = String(flags.requests).split(",").map(Number) as [number, number];
if (!(n1 >= 0 && n2 > n1)) throw new Error(`--requests: two counts, the second larger`);
const functions = flags.functions as number;
if (spawnSync("valgrind", ["--version"]).status !== 0)
  throw new Error("valgrind not found: apt-get install -y valgrind");

/**
 * The router's settings for a count: its health probes and metrics scrapes once an hour, so after the
 * first look at the upstream none falls in the window. They run by the clock (a second apart by
 * default), and under callgrind a run lasts minutes, so the larger count's longer run carried more of
 * them, as many more as the machine was busier.
 */
const QUIET = "health:\n  interval: 1h\ndiscovery:\n  metricsInterval: 1h\n  modelsInterval: 1h\n";

/** `n` requests at 8 connections, each read to its end */
async function send(url: string, n: number): Promise<void> {
  const u = new URL(url);
  const pool = new Pool(u.origin, { connections: 8, pipelining: 1 });
  const body = completionBody(stream);
  let left = n;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (left-- > 0) {
        const status = await postAndDrain(pool, u.pathname, body);
        if (status !== 200) throw new Error(`router answered ${status}`);
      }
    }),
  );
  await pool.close();
}

/** V8's symbol map of process `pid`: written there whatever the temp dir, removed after each count */
const perfMapOf = (pid: number | undefined) => `/tmp/perf-${pid}.map`;

/**
 * Self instructions per JavaScript function in callgrind's profile `out` of process `pid`, named from
 * V8's symbol map. Keyed by function and file name without folders or line, so that a function that
 * moved between folders (or lines) in one build is still matched with itself in the other.
 */
function jsFunctions(out: string, pid: number): Map<string, number> {
  const mapFile = perfMapOf(pid);
  const ranges: { start: number; end: number; name: string }[] = [];
  if (existsSync(mapFile)) {
    for (const line of readFileSync(mapFile, "utf8").split("\n")) {
      const [a, size, ...rest] = line.split(" ");
      const name = rest.join(" ");
      // JavaScript only (tier marks ~ * ^ +), not V8's builtins or stubs
      const m = /^JS:[~*^+]?(\S*) (.+?)(?::\d+){0,2}$/.exec(name);
      if (!m || !a || !size) continue;
      const start = parseInt(a, 16);
      ranges.push({
        start,
        end: start + parseInt(size, 16),
        // the router's own code (its build's dist/src) marked apart from undici's and node's
        name: `${m[1] || "(anonymous)"} ${m[2]!.includes("/dist/src/") ? OWN : ""}${basename(m[2]!)}`,
      });
    }
  }
  ranges.sort((x, y) => x.start - y.start);
  const annotated = spawnSync("callgrind_annotate", ["--threshold=100", out], {
    encoding: "utf8",
    maxBuffer: 256 * 2 ** 20,
  }).stdout;
  const byName = new Map<string, number>();
  for (const line of annotated.split("\n")) {
    const m = /^\s*([\d,]+) \([\s\d.]+%\)\s+\?\?\?:0x([0-9a-f]+) \[\?\?\?\]/.exec(line);
    if (!m) continue;
    const addr = parseInt(m[2]!, 16);
    // the last range starting at or below addr (binary search)
    let lo = 0;
    let hi = ranges.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (ranges[mid]!.start <= addr) lo = mid;
      else hi = mid - 1;
    }
    const r = ranges[lo];
    if (!r || addr < r.start || addr >= r.end) continue;
    byName.set(r.name, (byName.get(r.name) ?? 0) + Number(m[1]!.replace(/,/g, "")));
  }
  return byName;
}

/** the mark of a function of the router's own code (jsFunctions' keys) */
const OWN = "src/";

interface Count {
  total: number;
  /** --functions: self instructions per JavaScript function */
  js?: Map<string, number>;
}

/** instructions the router of `build` executed from its start to its exit, serving `n` requests */
async function count(build: string, n: number): Promise<Count> {
  // callgrind's profile is written here and removed with it: only the count on stderr is read
  const dir = mkdtempSync(join(tmpdir(), "router-instructions-"));
  const upPort = await freePort();
  const port = await freePort();
  const up = spawnUpstream(upPort);
  const args = ["--tool=callgrind", "--smc-check=all", `--callgrind-out-file=${join(dir, "out")}`];
  // no probes after the first: their work follows the clock, not the requests (see QUIET)
  writeFileSync(join(dir, "quiet.yaml"), QUIET);
  args.push(
    process.execPath,
    ...(functions > 0 ? ["--perf-basic-prof"] : []),
    join(build, "dist/src/cli/main.js"),
    "router",
    "--config",
    join(dir, "quiet.yaml"),
  );
  args.push("--host", "127.0.0.1", "--port", String(port));
  args.push("--backend", `http://127.0.0.1:${upPort}`, "--policy", String(flags.policy));
  const router = spawn("valgrind", args, {
    stdio: ["ignore", "ignore", "pipe"],
    env: { ...process.env, SWITCHYARD_LOG_LEVEL: "warn" },
  });
  // the tail of valgrind's report, where the count is (bounded: a chatty router cannot grow it)
  let log = "";
  router.stderr!.on("data", (b: Buffer) => (log = (log + b.toString()).slice(-16_384)));
  const exited = new Promise<void>((resolve) => router.on("exit", () => resolve()));
  try {
    await waitHttp(`http://127.0.0.1:${upPort}/health`);
    // under valgrind the router takes tens of seconds to start, minutes on a busy machine
    for (let i = 0; ; i++) {
      try {
        await waitHttp(`http://127.0.0.1:${port}/ready`);
        break;
      } catch (err) {
        if (i >= 29) throw err;
      }
    }
    await send(`http://127.0.0.1:${port}/v1/completions`, n);
    router.kill("SIGTERM");
    await exited;
    const m = /Collected : (\d+)/.exec(log);
    if (!m) throw new Error(`no instruction count from valgrind:\n${log.slice(-2000)}`);
    const total = Number(m[1]);
    return functions > 0 ? { total, js: jsFunctions(join(dir, "out"), router.pid!) } : { total };
  } finally {
    if (router.exitCode === null) router.kill("SIGKILL");
    up.kill("SIGTERM");
    rmSync(dir, { recursive: true, force: true });
    rmSync(perfMapOf(router.pid), { force: true });
  }
}

console.log(
  `${flags.workload} requests through \`switchyard router --policy ${flags.policy}\`, instructions per request from ${n1} and ${n2} requests\n`,
);
console.log("| build | repeat | instructions / request | ÷ first build |\n|---|---|---|---|");
const first: number[] = [];
/** per build: each repeat's JavaScript instructions per request, by function */
const js: Map<string, number>[][] = builds.map(() => []);
for (let r = 0; r < (flags.repeats as number); r++) {
  for (const [b, build] of builds.entries()) {
    const a = await count(build, n1);
    const z = await count(build, n2);
    const per = (z.total - a.total) / (n2 - n1);
    if (b === 0) first[r] = per;
    const ratio = b === 0 ? "—" : `${(per / first[r]!).toFixed(3)}×`;
    let note = "";
    if (a.js && z.js) {
      const diff = new Map<string, number>();
      for (const k of new Set([...a.js.keys(), ...z.js.keys()]))
        diff.set(k, ((z.js.get(k) ?? 0) - (a.js.get(k) ?? 0)) / (n2 - n1));
      js[b]!.push(diff);
      let sum = 0;
      let own = 0;
      for (const [k, v] of diff) {
        sum += v;
        if (k.includes(` ${OWN}`)) own += v;
      }
      const f = (x: number) => Math.round(x).toLocaleString("en-US");
      note = ` (JavaScript ${f(sum)}, the router's own ${f(own)})`;
    }
    console.log(`| ${build} | ${r + 1} | ${Math.round(per).toLocaleString("en-US")}${note} | ${ratio} |`);
  }
}

if (functions > 0) {
  // each function's median over the repeats, per build; listed by how far it moved from the first build
  const names = new Set(js.flatMap((reps) => reps.flatMap((m) => [...m.keys()])));
  const rows = [...names].map((k) => ({
    k,
    per: js.map((reps) =>
      percentile(
        reps.map((m) => m.get(k) ?? 0),
        50,
      ),
    ),
  }));
  // one build: by cost; more: by the largest difference from the first
  const moved = (x: { per: number[] }) =>
    builds.length > 1 ? Math.max(...x.per.map((v) => Math.abs(v - x.per[0]!))) : x.per[0]!;
  rows.sort((x, y) => moved(y) - moved(x));
  console.log(`\nJavaScript instructions per request by function (median of repeats):\n`);
  console.log(`| function file | ${builds.join(" | ")} |\n|---|${builds.map(() => "---|").join("")}`);
  for (const x of rows.slice(0, functions))
    console.log(`| ${x.k} | ${x.per.map((v) => Math.round(v).toLocaleString("en-US")).join(" | ")} |`);
}
