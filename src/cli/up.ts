// `switchyard up`: the whole stack on one machine. Starts N simulated engines and a router as child
// processes of this one (each engine its own process, so they use every core), waits until all are
// ready, prints how to call the stack, and stops everything on Ctrl-C: the children run in their own
// process groups so that a terminal's Ctrl-C reaches this process only, and the first signal drains
// (router first, then engines), a second exits at once. Children also stop when this process dies
// without a signal (they hold an IPC channel to it). Optional parts live beside it: up-cache-server.ts,
// up-kv-cluster.ts, up-pd.ts, up-autoscale.ts (--autoscale MIN:MAX), ports.ts. Signals, ports, --kv-curve and the options in full:
// docs/operations.md#running-the-stack-on-one-machine.
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CliError, helpText, parseFlags, wantsHelp } from "../config/args.js";
import { newKeyPair, writeKeyDir } from "../kvevents/curve.js";
import { logger } from "../obs/log.js";
import { onShutdown, PARENT_WATCH_ENV, shutdown } from "../obs/lifecycle.js";
import { routerNodeFlags } from "./v8-heap.js";
import { findOrInstallPrometheus, startPrometheus } from "../ops/monitoring.js";
import { portProblems, type StackPort } from "./ports.js";
import { UP_OPTIONS } from "./up-options.js";
import { cacheServerPorts, cacheServerWiring, waitTcp } from "./up-cache-server.js";
import { kvClusterPorts, kvClusterWiring } from "./up-kv-cluster.js";
import { autoscaleRange, autoscaleRouterConfig, LocalScaler, type ScaledEngine } from "./up-autoscale.js";
import { joinKvCluster, startKvNodes } from "../ops/kv-cluster.js";
import { describeSlots, engineSlots, isDisaggregated, routerBackendArgs, routerTp } from "./up-pd.js";

const UP_FLAGS = new Set(Object.keys(UP_OPTIONS.specs));

/**
 * How long a stack process may take to stop after SIGTERM before it is killed: the router drains
 * in-flight streams for its drain timeout (30 s by default) and exits a little after it.
 */
const CHILD_STOP_MS = 45_000;

/** Splits argv into `up`'s own flags and the flags passed through to every engine. */
export function splitArgs(argv: string[]): { own: string[]; engine: string[] } {
  const own: string[] = [];
  const engine: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const name = a.startsWith("--") ? a.slice(2).split("=")[0]!.replace(/_/g, "-") : "";
    const target = UP_FLAGS.has(name) ? own : engine;
    target.push(a);
    // a flag without '=' takes the next token as its value unless that token is itself a flag
    const next = argv[i + 1];
    if (a.startsWith("--") && !a.includes("=") && next !== undefined && !next.startsWith("--")) {
      target.push(next);
      i++;
    }
  }
  return { own, engine };
}

function binPath(): { cmd: string; pre: string[] } {
  const self = fileURLToPath(import.meta.url);
  if (self.endsWith(".ts")) {
    return {
      cmd: process.execPath,
      pre: ["--import", "tsx", fileURLToPath(new URL("./main.ts", import.meta.url))],
    };
  }
  return { cmd: process.execPath, pre: [fileURLToPath(new URL("./main.js", import.meta.url))] };
}

async function waitReady(url: string, deadline: number, child: ChildProcess, what: string): Promise<void> {
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new CliError(`${what} exited with status ${child.exitCode} before it was ready`);
    try {
      const res = await fetch(url);
      await res.arrayBuffer();
      if (res.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new CliError(`${what} was not ready at ${url} in time`);
}

export async function main(argv: string[]): Promise<number> {
  if (wantsHelp(argv)) {
    console.log(
      helpText(
        "usage: switchyard up [options] [any `switchyard sim` flag, passed to every engine]\n\n" +
          "Starts N simulated engines and the router on this machine. Example:\n" +
          "  switchyard up --engines 4 --model Qwen/Qwen2.5-0.5B-Instruct --time-scale 0.1 --max-model-len 8192\n" +
          "  switchyard up --prefill 8 --decode 2 --prefill-tp 1 --decode-tp 4 --gpu l40s --policy least-load\n" +
          "  switchyard up --engines 4 --cache-server   (the engines share one LMCache cache server)\n" +
          "  switchyard up --engines 4 --kv-cluster 3   (a Valkey/Redis Cluster of 3 primaries + 3 replicas as the shared tier)",
        UP_OPTIONS.specs,
      ),
    );
    return 0;
  }
  const { own, engine: engineArgs } = splitArgs(argv);
  const { flags, given } = parseFlags(own, UP_OPTIONS.specs);
  const range = autoscaleRange(flags);
  if (range) {
    if (given.has("prefill") || given.has("decode"))
      throw new CliError("--autoscale sizes one pool of engines: leave out --prefill/--decode");
    if (flags["kv-curve"]) throw new CliError("--autoscale starts engines as it goes: leave out --kv-curve");
    // the stack starts with --engines, held within MIN:MAX (at least one: the router needs an engine)
    const initial = given.has("engines") ? (flags.engines as number) : range.min;
    flags.engines = Math.min(range.max, Math.max(1, range.min, initial));
  }
  const slots = engineSlots(flags, given, engineArgs);
  const n = slots.length;
  const host = flags.host as string;
  const basePort = flags["engine-base-port"] as number;
  const kvBase = flags["kv-events-base-port"] as number;
  const log = logger("up");
  const { cmd, pre } = binPath();
  const children: { name: string; child: ChildProcess }[] = [];
  let stopping = false;
  /** engines --autoscale stopped on purpose: their exit does not stop the stack */
  const retired = new Set<ChildProcess>();
  let scaler: LocalScaler | undefined;

  const start = (name: string, args: string[], env: Record<string, string> = {}): ChildProcess => {
    const node = args[0] === "router" ? routerNodeFlags() : [];
    const child = spawn(cmd, [...node, ...pre, ...args], {
      // the IPC channel is how the child learns that this process is gone, however it went
      stdio: ["ignore", "inherit", "inherit", "ipc"],
      env: { ...process.env, ...env, [PARENT_WATCH_ENV]: "ipc" },
      // its own process group: the terminal's Ctrl-C is this process's to pass on, once
      detached: true,
    });
    children.push({ name, child });
    child.once("exit", (code, signal) => {
      if (retired.has(child)) return;
      if (!stopping) log.error({ process: name, code, signal }, "a stack process exited; stopping the stack");
      if (!stopping) void stopAll().then(() => process.exit(1));
    });
    return child;
  };

  const stopOne = (child: ChildProcess) =>
    new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve();
      const t = setTimeout(() => child.kill("SIGKILL"), CHILD_STOP_MS);
      child.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      child.kill("SIGTERM");
    });
  const stopAll = async () => {
    stopping = true;
    scaler?.stop();
    // the router first: its in-flight streams drain through engines that must still be up
    await Promise.all(children.filter((c) => c.name === "router").map((c) => stopOne(c.child)));
    const rest = children.filter((c) => c.name !== "router");
    // the shared tier last: the engines' stores still in flight go to it
    const tierLast = (c: { name: string }) => c.name === "cache-server" || c.name.startsWith("kv-cluster");
    await Promise.all(rest.filter((c) => !tierLast(c)).map((c) => stopOne(c.child)));
    await Promise.all(rest.filter(tierLast).map((c) => stopOne(c.child)));
  };
  // however this process ends (a second signal exits at once), no child outlives it: they are in
  // their own process groups, so nothing else would stop them. The whole group: the router's workers
  // (node:cluster forks) are in it, and a worker that outlived its primary by a moment would still
  // end a cut stream with an error event and [DONE], as if it were an answer
  process.on("exit", () => {
    for (const { child } of children)
      if (child.exitCode === null && child.signalCode === null) killGroup(child);
  });
  // this process's own shutdown deadline must outlast the children's drain
  onShutdown(stopAll, CHILD_STOP_MS + 5_000);
  // a closed terminal sends SIGHUP, whose default would leave the children running
  process.once("SIGHUP", () => void shutdown("SIGHUP"));

  // the shared tier's wiring is checked with the ports, before anything starts
  const cluster = kvClusterWiring(flags, host, engineArgs, isDisaggregated(slots));
  if (cluster) process.on("exit", () => rmSync(cluster.options.dir, { recursive: true, force: true }));
  const tier = cluster ? cluster.model : cacheServerWiring(flags, host, engineArgs, isDisaggregated(slots));
  const problems = await portProblems(stackPorts(flags, range ? range.max : n), host);
  if (problems.length > 0) throw new CliError(`cannot start the stack:\n  ${problems.join("\n  ")}`);

  let curveDirs: { engines: string[]; router: string } | null = null;
  if (flags["kv-curve"]) {
    if (kvBase <= 0) throw new CliError("--kv-curve needs KV events (--kv-events-base-port above 0)");
    const root = mkdtempSync(join(tmpdir(), "switchyard-kv-curve-"));
    process.on("exit", () => rmSync(root, { recursive: true, force: true }));
    const router = newKeyPair();
    curveDirs = { engines: [], router: join(root, "router") };
    // one keypair per engine: each serves (its PUB binds) and lets in the router's key; the router
    // believes engine i's events only from the holder of engine i's secret (engines.keys)
    const engineKeys = new Map<string, string>();
    for (let i = 0; i < n; i++) {
      const pair = newKeyPair();
      const dir = join(root, `engine-${i}`);
      writeKeyDir(dir, pair, { clientKeys: [router.publicKey] });
      curveDirs.engines.push(dir);
      engineKeys.set(new URL(`http://${host}:${basePort + i}`).origin, pair.publicKey);
    }
    writeKeyDir(curveDirs.router, router, { engineKeys });
    if (tier) {
      // the cache server's events too: it serves to the router's key, the router believes its key alone
      const pair = newKeyPair();
      const dir = join(root, "cache-server");
      writeKeyDir(dir, pair, { clientKeys: [router.publicKey] });
      tier.serverArgs.push("--kv-events-curve-dir", dir);
      tier.routerArgs.push("--cache-server-key", pair.publicKey);
    }
  }

  const deadline = Date.now() + (flags["ready-timeout"] as number) * 1000;
  if (cluster) {
    // the nodes are not ours: each gets a guard that kills it should this process die unannounced; a
    // node that exits leaves the stack up (the cluster fails over to its replica)
    for (const [port, node] of startKvNodes(cluster.options)) {
      children.push({ name: `kv-cluster ${port}`, child: node });
      const nodeGuard = guard(node.pid!);
      children.push({ name: "kv-cluster guard", child: nodeGuard });
      node.once("exit", (code, signal) => {
        nodeGuard.kill("SIGKILL");
        if (!stopping) log.warn({ port, code, signal }, "a kv cluster node exited; its replica takes over");
      });
    }
    try {
      await joinKvCluster(cluster.options, deadline);
    } catch (err) {
      await stopAll();
      throw new CliError(`--kv-cluster: ${(err as Error).message}`);
    }
  }
  if (tier) {
    // before the engines, whose first lookups go to it
    const server = start("cache-server", tier.serverArgs);
    try {
      await waitTcp(host, flags["cache-server-port"] as number, deadline, server, "the cache server");
    } catch (err) {
      await stopAll();
      throw err;
    }
  }
  const engineUrls: string[] = [];
  const engineChildren: ChildProcess[] = [];
  /** engine i: port base+i, KV events on kvBase+i (and replay on kvBase+1000+i) */
  const launchEngine = (i: number): ChildProcess => {
    const port = basePort + i;
    const args = [
      "sim",
      flags.model as string,
      "--host",
      host,
      "--port",
      String(port),
      "--gpu",
      flags.gpu as string,
    ];
    if (kvBase > 0) {
      args.push(
        "--kv-events-config",
        JSON.stringify({
          enable_kv_cache_events: true,
          publisher: "zmq",
          endpoint: `tcp://*:${kvBase + i}`, // vLLM binds (rather than connects) when the endpoint has `*`
          replay_endpoint: `tcp://*:${kvBase + 1000 + i}`,
          topic: "",
        }),
      );
      if (curveDirs) args.push("--kv-curve-dir", curveDirs.engines[i]!);
    }
    // the router manages the adapters: the engines serve LoRA and their load API (vLLM's runtime updating)
    const loraDir = flags["lora-dir"] as string | undefined;
    if (loraDir && !engineArgs.includes("--enable-lora")) args.push("--enable-lora");
    const slot = slots[i] ?? slots[0]!;
    return start(
      `engine-${i}`,
      [...args, ...slot.args(engineArgs), ...(tier?.engineArgs ?? [])],
      loraDir ? { ...tier?.engineEnv, VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" } : tier?.engineEnv,
    );
  };
  for (let i = 0; i < n; i++) {
    engineUrls.push(`http://${host}:${basePort + i}`);
    engineChildren.push(launchEngine(i));
  }
  try {
    await Promise.all(
      engineUrls.map((u, i) => waitReady(`${u}/health`, deadline, engineChildren[i]!, `engine ${i}`)),
    );
  } catch (err) {
    await stopAll();
    throw err;
  }
  const routerPort = flags.port as number;
  const routerArgs = [
    "router",
    "--host",
    host,
    "--port",
    String(routerPort),
    "--policy",
    flags.policy as string,
  ];
  const routerUrl = `http://${host}:${routerPort}`;
  const kvEventsOf = (i: number) => (kvBase > 0 ? `tcp://${host}:${kvBase + i}` : undefined);
  if (range) {
    // the engines come and go: the router reads them from a file this process keeps (up-autoscale.ts)
    const dir = mkdtempSync(join(tmpdir(), "switchyard-up-autoscale-"));
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
    const backendsFile = join(dir, "engines.json");
    const configFile = join(dir, "router.json");
    writeFileSync(configFile, JSON.stringify(autoscaleRouterConfig(flags, range, backendsFile)), {
      mode: 0o600,
    });
    scaler = new LocalScaler({
      routerUrl,
      backendsFile,
      range,
      intervalMs: (flags["autoscale-interval"] as number) * 1000,
      launch: (slot) => ({
        slot,
        url: `http://${host}:${basePort + slot}`,
        child: launchEngine(slot),
        phase: "starting",
        kvEvents: kvEventsOf(slot),
      }),
      ready: (e) =>
        waitReady(
          `${e.url}/health`,
          Date.now() + (flags["ready-timeout"] as number) * 1000,
          e.child,
          `engine ${e.slot}`,
        ),
      retire: async (e) => {
        retired.add(e.child);
        const at = children.findIndex((c) => c.child === e.child);
        if (at >= 0) children.splice(at, 1);
        await stopOne(e.child);
      },
    });
    scaler.adopt(
      engineChildren.map((child, i) => ({
        slot: i,
        url: engineUrls[i]!,
        child,
        phase: "serving" as const,
        kvEvents: kvEventsOf(i),
      })) satisfies ScaledEngine[],
    );
    routerArgs.push("--config", configFile);
  } else routerArgs.push(...routerBackendArgs(slots, engineUrls));
  // the predictive policy times the engines with the profile they simulate (GPU, TP, time scale)
  routerArgs.push("--predictive-gpu", flags.gpu as string);
  const roleTp = routerTp(slots);
  if (roleTp !== null) routerArgs.push("--predictive-tp", String(roleTp));
  for (const [sim, router] of [
    ["--tensor-parallel-size", "--predictive-tp"],
    ["--time-scale", "--predictive-time-scale"],
  ] as const) {
    if (router === "--predictive-tp" && roleTp !== null) continue;
    const at = engineArgs.indexOf(sim);
    const eq = engineArgs.find((a) => a.startsWith(`${sim}=`));
    if (eq !== undefined) routerArgs.push(router, eq.slice(sim.length + 1));
    else if (at >= 0 && engineArgs[at + 1] !== undefined) routerArgs.push(router, engineArgs[at + 1]!);
  }
  if (kvBase > 0 && !range) {
    // engine i publishes KV events on kvBase+i and serves replay on kvBase+1000+i (see above)
    routerArgs.push(
      "--kv-events-port",
      String(kvBase),
      "--kv-events-replay-port",
      String(kvBase + 1000),
      "--kv-events-by-index",
    );
    if (curveDirs) routerArgs.push("--kv-curve-dir", curveDirs.router);
  }
  // every engine loads from the one cache server: the router prices what it holds for all of them
  if (tier) routerArgs.push(...tier.routerArgs);
  if (flags["lora-dir"]) {
    routerArgs.push("--lora-dir", flags["lora-dir"] as string);
    // the router keeps each engine within its host cache: --max-cpu-loras, else vLLM's default (--max-loras)
    for (const f of ["--max-cpu-loras", "--max-loras"]) {
      const at = engineArgs.indexOf(f);
      const eq = engineArgs.find((a) => a.startsWith(`${f}=`));
      const v = eq !== undefined ? eq.slice(f.length + 1) : at >= 0 ? engineArgs[at + 1] : undefined;
      if (v !== undefined) {
        routerArgs.push("--lora-max-cpu-loras", v);
        break;
      }
    }
  }
  const router = start("router", routerArgs);
  try {
    await waitReady(`${routerUrl}/ready`, deadline, router, "router");
  } catch (err) {
    await stopAll();
    throw err;
  }
  const model = flags.model as string;
  let prometheusUrl: string | null = null;
  if (flags.monitoring) {
    try {
      const bin = findOrInstallPrometheus((msg) => log.info(msg));
      const prom = await startPrometheus(
        bin,
        {
          router: routerUrl,
          engines: engineUrls,
          cacheServer: tier?.metricsUrl,
          model,
          intervalS: flags["prometheus-interval"] as number,
        },
        { host, port: flags["prometheus-port"] as number },
      );
      children.push({ name: "prometheus", child: prom.child });
      const promGuard = guard(prom.child.pid!);
      children.push({ name: "prometheus guard", child: promGuard });
      // monitoring is not serving: the stack goes on without it
      prom.child.once("exit", (code, signal) => {
        // its pid may be another process's soon: nothing must kill it later
        promGuard.kill("SIGKILL");
        if (!stopping) log.error({ code, signal }, "prometheus exited; the stack keeps serving without it");
      });
      prometheusUrl = prom.url;
    } catch (err) {
      await stopAll();
      throw new CliError(`--monitoring: ${(err as Error).message}`);
    }
  }
  scaler?.start();
  const described = describeSlots(slots);
  const body = JSON.stringify({
    model,
    messages: [{ role: "user", content: "Hello! What can you do?" }],
    max_tokens: 32,
  });
  process.stdout.write(
    [
      "",
      `Switchyard is up: ${described.fleet} simulated ${flags.gpu as string} engine(s) serving ${model}, router policy ${flags.policy as string}.`,
      `  router   ${routerUrl}   (metrics ${routerUrl}/metrics, fleet ${routerUrl}/engines)`,
      // which Node runs the stack: `npm start` runs node_modules/.bin's (Node 24) where the machine's is older
      `  node     ${process.version}`,
      ...engineUrls.map((u, i) => `  engine ${i} ${u}${described.tag(i)}`),
      ...(range
        ? [
            `  autoscale ${range.min}:${range.max} from the router's SLO decision (${routerUrl}/autoscale); an engine leaving drains first`,
          ]
        : []),
      ...(cluster ? cluster.summary : tier ? [tier.summary] : []),
      ...(prometheusUrl
        ? [
            `  prometheus ${prometheusUrl}   (alert rules from deploy/prometheus loaded; dashboards to import: deploy/grafana/*.json)`,
          ]
        : []),
      "",
      "Try it:",
      `  curl -s ${routerUrl}/v1/chat/completions -H 'Content-Type: application/json' -d '${body}'`,
      "",
      "Press Ctrl-C to stop.",
      "",
    ].join("\n"),
  );
  // Stay alive until a signal arrives; onShutdown stops the children and exits.
  await new Promise<never>(() => undefined);
  return 0;
}

/** The ports a stack binds, engine by engine (see where they are passed below). */
function stackPorts(flags: Record<string, unknown>, n: number): StackPort[] {
  const base = flags["engine-base-port"] as number;
  const kv = flags["kv-events-base-port"] as number;
  const out: StackPort[] = [];
  if (flags.port !== 0) out.push({ port: flags.port as number, what: "the router", flag: "--port" });
  for (let i = 0; i < n; i++) {
    out.push({ port: base + i, what: `engine ${i}'s HTTP`, flag: "--engine-base-port" });
    if (kv > 0) {
      out.push({ port: kv + i, what: `engine ${i}'s KV-event PUB`, flag: "--kv-events-base-port" });
      out.push({ port: kv + 1000 + i, what: `engine ${i}'s KV-event replay`, flag: "--kv-events-base-port" });
    }
  }
  if (flags.monitoring)
    out.push({ port: flags["prometheus-port"] as number, what: "Prometheus", flag: "--prometheus-port" });
  // --kv-cluster models its tier with a cache server on the cache server's ports
  out.push(...cacheServerPorts({ ...flags, "cache-server": flags["cache-server"] || flags["kv-cluster"] }));
  out.push(...kvClusterPorts(flags));
  return out;
}

/**
 * A process that holds an IPC channel to this one and kills `pid` when it closes: what the stack's own
 * processes do for themselves (watchParent), for one that is not ours.
 */
function guard(pid: number): ChildProcess {
  const script =
    "process.on('disconnect',()=>{try{process.kill(Number(process.argv[1]),'SIGKILL')}catch{}process.exit(0)})";
  const child = spawn(process.execPath, ["-e", script, String(pid)], {
    stdio: ["ignore", "ignore", "ignore", "ipc"],
    detached: true,
  });
  return child;
}

/** SIGKILL a child and every process in its group (it was spawned detached: the group is its pid). */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, "SIGKILL");
  } catch {
    child.kill("SIGKILL");
  }
}
