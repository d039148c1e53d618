// A Valkey (or Redis) Cluster on one machine: primaries, each with its replicas, joined with the
// server's own `--cluster create`, for `switchyard up --kv-cluster` and the interop suite. The store is
// the real server (Debian's redis-server, or valkey-server where installed), not a reimplementation:
// keys sharded by hash slot, a replica promoted when its primary dies. Keys are a cache: nothing is
// saved; each node's nodes.conf lives in a directory the caller owns.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { delimiter, join } from "node:path";
import { PeerError } from "../errors/index.js";

/** the server and its CLI: Valkey where installed, else Redis (the same protocol and cluster bus) */
export interface KvServerBinaries {
  server: string;
  cli: string;
  name: "valkey" | "redis";
}

export function findKvServer(path = process.env.PATH ?? ""): KvServerBinaries | null {
  const dirs = path.split(delimiter).filter(Boolean);
  const find = (cmd: string) => dirs.map((d) => join(d, cmd)).find((p) => existsSync(p));
  for (const name of ["valkey", "redis"] as const) {
    const server = find(`${name}-server`);
    const cli = find(`${name}-cli`);
    if (server && cli) return { server, cli, name };
  }
  return null;
}

export interface KvClusterOptions {
  bins: KvServerBinaries;
  /** the address every node binds and announces */
  host: string;
  /** node i listens on basePort + i (primaries first, then replicas); its cluster bus on that + 10000 */
  basePort: number;
  primaries: number;
  replicasPerPrimary: number;
  /** each node's memory for keys; allkeys-lru past it */
  maxMemoryBytes: number;
  /** where each node keeps its nodes.conf */
  dir: string;
  /** how long a primary may be unreachable before a replica takes over */
  nodeTimeoutMs?: number;
  /**
   * every node requires it (requirepass; masterauth for replication), and the CLI calls here send it
   * through the environment. On one machine it rides the nodes' command lines: a dev and test cluster
   * (the chart writes it to a config file instead)
   */
  password?: string | undefined;
}

export const clusterPorts = (o: Pick<KvClusterOptions, "basePort" | "primaries" | "replicasPerPrimary">) =>
  Array.from({ length: o.primaries * (1 + o.replicasPerPrimary) }, (_, i) => o.basePort + i);

/** one node's command line */
export function kvNodeArgs(o: KvClusterOptions, port: number): string[] {
  return [
    ...["--port", String(port), "--bind", o.host],
    ...["--cluster-enabled", "yes", "--cluster-config-file", join(o.dir, `nodes-${port}.conf`)],
    ...["--cluster-node-timeout", String(o.nodeTimeoutMs ?? 2000)],
    // a cache: a shard with no node left serves misses, the others keep serving; a replica that lost
    // touch with its primary for a while (a busy machine) still takes over, its chunks content-addressed
    ...["--cluster-require-full-coverage", "no", "--cluster-allow-reads-when-down", "yes"],
    ...["--cluster-replica-validity-factor", "0"],
    ...["--maxmemory", String(o.maxMemoryBytes), "--maxmemory-policy", "allkeys-lru"],
    ...["--save", "", "--appendonly", "no", "--dir", o.dir, "--protected-mode", "no"],
    ...(o.password !== undefined ? ["--requirepass", o.password, "--masterauth", o.password] : []),
  ];
}

/** the environment a CLI call sends `password` through (never its arguments) */
export function kvCliEnv(password: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.REDISCLI_AUTH;
  delete env.VALKEYCLI_AUTH;
  if (password !== undefined) env.REDISCLI_AUTH = env.VALKEYCLI_AUTH = password;
  return env;
}

/** `CLUSTER INFO` (or any `cli` command) of one node; "" when it does not answer (or refuses) */
export function kvCli(
  bins: KvServerBinaries,
  host: string,
  port: number,
  args: string[],
  password?: string,
): string {
  const r = spawnSync(bins.cli, ["-h", host, "-p", String(port), ...args], {
    encoding: "utf8",
    timeout: 10_000,
    env: kvCliEnv(password),
  });
  return r.status === 0 && !/^(NOAUTH|WRONGPASS|ERR)/.test(r.stdout) ? r.stdout : "";
}

export function clusterState(
  bins: KvServerBinaries,
  host: string,
  port: number,
  password?: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of kvCli(bins, host, port, ["cluster", "info"], password).split(/\r?\n/)) {
    const at = line.indexOf(":");
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1).trim();
  }
  return out;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until every node answers, joins them with `--cluster create` (replicas assigned by the CLI),
 * and until every node sees the cluster whole. Throws with the CLI's output when it cannot.
 */
export async function joinKvCluster(o: KvClusterOptions, deadline: number): Promise<void> {
  const ports = clusterPorts(o);
  for (const p of ports)
    while (!kvCli(o.bins, o.host, p, ["ping"], o.password).includes("PONG")) {
      if (Date.now() > deadline)
        throw new PeerError(`the ${o.bins.name} node on ${o.host}:${p} did not answer in time`);
      await sleep(100);
    }
  const r = spawnSync(
    o.bins.cli,
    [
      "--cluster",
      "create",
      ...ports.map((p) => `${o.host}:${p}`),
      "--cluster-replicas",
      String(o.replicasPerPrimary),
      "--cluster-yes",
    ],
    { encoding: "utf8", timeout: 60_000, env: kvCliEnv(o.password) },
  );
  if (r.status !== 0)
    throw new PeerError(`${o.bins.name}-cli --cluster create failed: ${(r.stdout + r.stderr).slice(-1500)}`);
  for (const p of ports)
    while (clusterState(o.bins, o.host, p, o.password).cluster_state !== "ok") {
      if (Date.now() > deadline)
        throw new PeerError(`the cluster did not reach state ok on ${o.host}:${p} in time`);
      await sleep(100);
    }
}

/** Starts every node (the caller stops them; each is its own process group). */
export function startKvNodes(o: KvClusterOptions): Map<number, ChildProcess> {
  const nodes = new Map<number, ChildProcess>();
  for (const p of clusterPorts(o))
    nodes.set(p, spawn(o.bins.server, kvNodeArgs(o, p), { stdio: "ignore", detached: true }));
  return nodes;
}

/** the primaries serving slots now, as "host:port", and their slot counts (from CLUSTER SHARDS/NODES) */
export function clusterPrimaries(
  bins: KvServerBinaries,
  host: string,
  port: number,
  password?: string,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of kvCli(bins, host, port, ["cluster", "nodes"], password).split(/\r?\n/)) {
    const f = line.split(" ");
    if (f.length < 8 || !f[2]!.includes("master") || f[2]!.includes("fail")) continue;
    let slots = 0;
    for (const range of f.slice(8)) {
      if (range.startsWith("[")) continue;
      const [a, b] = range.split("-").map(Number);
      slots += b === undefined ? 1 : b - a! + 1;
    }
    if (slots > 0) out.set(f[1]!.split("@")[0]!, slots);
  }
  return out;
}
