// How many processes serve the router's port when `workers` is `auto` (the default): the count that
// measured fastest for the policy. A policy that reads no load (round-robin, no per-engine in-flight
// cap) shares nothing on a request's path, so each core serves its share, as nginx's
// `worker_processes auto` does; a load-aware pick is a claim the primary confirms (claims.ts), a round
// trip between processes per batch of picks, and on two cores one process measured faster for those
// (docs/router.md, "Workers and replicas", has the figures). Workers also need each their own
// sockets on an explicit port (SO_REUSEPORT, ../edge/accept.ts): with port 0 or without reusePort the
// primary would accept every connection itself, so auto stays one process there.
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import type { RouterConfig } from "../config/config.js";
import { reusePortSupported } from "../edge/accept.js";
import { HEAP_SET_ENV, nodeFlagGiven } from "../../obs/node-flags.js";

/** auto never starts more workers than this (the primary relays what each one reports) */
export const AUTO_MAX_WORKERS = 8;

export interface WorkerCount {
  workers: number;
  /** why that many, for the start-up log line */
  why: string;
}

/**
 * The cores this process may use: the CPUs it may run on, and no more than a cgroup v2 CPU quota
 * (`cpu.max`, a container's CPU limit) allows, rounded up.
 */
export function usableCores(
  cpuMax: () => string = () => readFileSync("/sys/fs/cgroup/cpu.max", "utf8"),
): number {
  const cpus = availableParallelism();
  let text: string;
  try {
    text = cpuMax();
  } catch {
    return cpus;
  }
  const [quota, period] = text.trim().split(/\s+/);
  const q = Number(quota);
  const p = Number(period);
  if (!(q > 0) || !(p > 0)) return cpus; // "max": no quota
  return Math.max(1, Math.min(cpus, Math.ceil(q / p)));
}

/** The processes to serve with: `workers` as set, or auto's choice for this config and machine. */
export function workerCount(
  cfg: Pick<RouterConfig, "workers" | "policy" | "port"> & {
    admission: Pick<RouterConfig["admission"], "maxInFlightPerEngine">;
  },
  cores: number = usableCores(),
  reusePort: boolean = reusePortSupported(),
): WorkerCount {
  if (cfg.workers !== "auto") return { workers: cfg.workers, why: "set by workers" };
  if (cfg.policy !== "round-robin")
    return { workers: 1, why: `auto: the ${cfg.policy} policy reads load, one process measures faster` };
  if (cfg.admission.maxInFlightPerEngine > 0)
    return { workers: 1, why: "auto: a per-engine in-flight cap reads load, one process measures faster" };
  if (cfg.port === 0) return { workers: 1, why: "auto: port 0 (workers need an explicit port)" };
  if (!reusePort) return { workers: 1, why: "auto: no SO_REUSEPORT on this platform or Node" };
  const n = Math.max(1, Math.min(AUTO_MAX_WORKERS, cores));
  return {
    workers: n,
    why: n > 1 ? `auto: one per core (${cores} cores, at most ${AUTO_MAX_WORKERS})` : "auto: one core",
  };
}

/** V8's background threads in a Node process unless `--v8-pool-size` says otherwise */
export const NODE_DEFAULT_V8_POOL = 4;

/**
 * The command-line flags each worker starts with: the primary's own, and a smaller pool of V8
 * background threads (the collector's parallel and concurrent phases, compilation) where the default
 * would put more of them on the machine than it has cores. N workers each with V8's default four are 4N
 * threads beside N event loops; when the cores are contended, a worker's scavenge waits for threads
 * that wait for a core, and its connections wait with it. With one thread per worker on two
 * cores, two round-robin workers served 10-24% more requests at 64 connections than with four, with a
 * p99 12-32% lower and 9-21% less CPU a request (docs/router.md, "How many processes by default"). A
 * pool size the operator set (on the command line or in NODE_OPTIONS) is kept.
 *
 * Round-robin workers also run on V8's own young generation, not the router's 8 MB semi-spaces: those
 * were chosen for a process keeping the KV and prefix indexes under hundreds of long prompts a second,
 * and round-robin keeps neither; at thousands of small requests a second, four times the scavenges
 * cost 7-35% more CPU a request, and the p99 with it (same page). The operator's own size is kept.
 */
export function workerExecArgv(
  execArgv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  cores: number,
  workers: number,
  policy: string,
): string[] {
  const ourYoungGen = env[HEAP_SET_ENV] === "1" && policy === "round-robin";
  const argv = execArgv.filter((a) => !(ourYoungGen && a.startsWith("--max-semi-space-size")));
  if (nodeFlagGiven("--v8-pool-size", argv, env)) return argv;
  const pool = Math.max(1, Math.floor(cores / Math.max(1, workers)));
  return pool >= NODE_DEFAULT_V8_POOL ? argv : [...argv, `--v8-pool-size=${pool}`];
}
