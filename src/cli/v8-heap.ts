// The router's young generation, set before it serves. V8 grows the semi-spaces of its young generation
// up to 32 MB each on a 64-bit machine, and a scavenge stops the event loop while it copies whatever is
// still alive since the last one. Under the default policy at 500 req/s of 4k-token prompts that was
// 5-6 MB (the KV-event index's new blocks and what was in flight), a 10-20 ms pause every 0.3 s that
// every request then waited out: most of the routing cost's p95. With semi-spaces of at most 8 MB a
// scavenge runs four times as often and pauses about 2 ms, for about a third more GC time (under 1% of
// a core there): the trade a latency-bound proxy wants (docs/router.md, "The event loop's pauses").
//
// A semi-space's ceiling is fixed when V8 sets up its heap, so it cannot be changed from inside a running
// process: the command re-executes itself (execve: the same pid, parent and open files) with the flag,
// once, before anything has started. An operator's own flag (on the command line or in NODE_OPTIONS)
// is left as it is; where `process.execve` is missing (Node before 22.15, or Windows) the router runs
// on V8's default. A process with an IPC channel to its parent is not replaced (Node takes the
// channel's descriptor out of the environment once it has opened it): `switchyard up` starts its router
// with the flag instead, and a router's workers inherit their primary's flags (round-robin workers all
// but this one: src/router/cluster/worker-count.ts).

import v8 from "node:v8";
import { HEAP_SET_ENV, nodeFlagGiven } from "../obs/node-flags.js";

/** the ceiling of each semi-space, MB, for commands whose tail latency is the product */
export const SEMI_SPACE_MB = 8;

const FLAG = "--max-semi-space-size";
/** set in the re-executed process's environment: never twice, and the flag is known to be ours */
const MARK = HEAP_SET_ENV;

type Execve = (file: string, args?: readonly string[], env?: NodeJS.ProcessEnv) => never;

/** what the caller's process was started with, and whether it can be replaced */
export interface HeapLaunch {
  execPath: string;
  execArgv: readonly string[];
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  execve: Execve | undefined;
  /** an IPC channel to the parent is open */
  channel: boolean;
}

/** whether the operator sized the young generation (NODE_OPTIONS, or flags given) */
const operatorSet = (execArgv: readonly string[], env: NodeJS.ProcessEnv) =>
  nodeFlagGiven(FLAG, execArgv, env);

/** node's flags for a router process started by another command (none when NODE_OPTIONS sizes it) */
export function routerNodeFlags(env: NodeJS.ProcessEnv = process.env): string[] {
  return operatorSet([], env) ? [] : [`${FLAG}=${SEMI_SPACE_MB}`];
}

/** the arguments to re-execute with, or null: already set (by us or the operator), or no execve */
export function heapReexecArgs(p: HeapLaunch): string[] | null {
  if (!p.execve || p.channel || p.env[MARK] === "1" || operatorSet(p.execArgv, p.env)) return null;
  return [p.execPath, `${FLAG}=${SEMI_SPACE_MB}`, ...p.execArgv, ...p.argv.slice(1)];
}

/** Replaces this process with itself under the router's young generation; returns only where it does not. */
export function setRouterHeap(): void {
  const execve = (process as { execve?: Execve }).execve;
  const args = heapReexecArgs({
    execPath: process.execPath,
    execArgv: process.execArgv,
    argv: process.argv,
    env: process.env,
    execve,
    channel: process.channel !== undefined,
  });
  if (!args || !execve) return;
  try {
    execve.call(process, process.execPath, args, { ...process.env, [MARK]: "1" });
  } catch (err) {
    // the exec itself failed (the binary gone, a seccomp rule): run on V8's default rather than not at all
    console.error(`switchyard router: running on V8's default young generation (${(err as Error).message})`);
  }
}

/**
 * V8's allocation-site pretenuring allocates straight into the old generation what an allocation site
 * has seen survive scavenges. In a proxy what survives a scavenge is whatever was in flight while one
 * ran late: after a stall, JSON.parse's request bodies were pretenured, and at 500 req/s of 4k-token
 * prompts the router's old generation took 8-10 MB a second of prompts that were dead a few ms later;
 * every few seconds a mark-compact swept 60-90 MB of them, holding the event loop 40-60 ms in marking
 * steps and its final pause, and every request arriving meanwhile queued behind it (the routing cost
 * benchmark's p95 of 7-60 ms and p99 of 30-120 ms). Without it the old generation takes 0.4-1.4 MB a
 * second and the same cell's p95 is 4-6 ms in most runs. What the router keeps for long (its indexes
 * and tables) is in typed arrays, which do not need it.
 */
const PRETENURING_ON = "--allocation-site-pretenuring";
const PRETENURING_OFF = "--no-allocation-site-pretenuring";

/** whether the router turns pretenuring off: unless the operator gave the flag either way */
export function pretenuringOff(execArgv: readonly string[], env: NodeJS.ProcessEnv): boolean {
  return ![PRETENURING_ON, PRETENURING_OFF].some((f) => nodeFlagGiven(f, execArgv, env));
}

/** Turns pretenuring off in this running router (a V8 flag read at each collection; no restart needed). */
export function setRouterPretenuring(): void {
  if (pretenuringOff(process.execArgv, process.env)) v8.setFlagsFromString(PRETENURING_OFF);
}
