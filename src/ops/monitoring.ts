// `switchyard up --monitoring`: a real Prometheus beside the local stack, scraping the router, every
// engine and the shared cache server (`up --cache-server`) with the labels the Helm chart's ServiceMonitors set (job, namespace, pod, switchyard_model)
// and the project's alert rules loaded, so the dashboards and alerts shipped in deploy/ can be tried
// on a laptop before a cluster. Prometheus is Debian's package, installed by
// scripts/install-prometheus.sh when absent.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { EnvironmentError, PeerError } from "../errors/index.js";

/** The package root (package.json beside deploy/), from src/ops under tsx or dist/src/ops once built. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!(existsSync(join(dir, "package.json")) && existsSync(join(dir, "deploy")))) {
    const up = dirname(dir);
    if (up === dir)
      throw new EnvironmentError("the switchyard package root (package.json beside deploy/) was not found");
    dir = up;
  }
  return dir;
}

function onPath(name: string): string | undefined {
  for (const d of (process.env.PATH ?? "").split(delimiter)) {
    const p = join(d, name);
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

/**
 * The prometheus binary: on PATH, or installed by scripts/install-prometheus.sh first (its output goes
 * to this process's stderr). Throws with what to do when neither works.
 */
export function findOrInstallPrometheus(log: (msg: string) => void): string {
  const found = onPath("prometheus");
  if (found) return found;
  const script = join(packageRoot(), "scripts", "install-prometheus.sh");
  if (!existsSync(script))
    throw new EnvironmentError(
      "prometheus is not on PATH: install it (Debian/Ubuntu: apt-get install prometheus)",
    );
  log(`prometheus is not on PATH: installing it with ${join("scripts", "install-prometheus.sh")}`);
  const r = spawnSync("bash", [script], { stdio: ["ignore", "inherit", "inherit"] });
  const after = onPath("prometheus");
  if (r.status !== 0 || !after)
    throw new EnvironmentError(
      "prometheus could not be installed (see above): install it (apt-get install prometheus) and retry",
    );
  return after;
}

export interface ScrapeTargets {
  router: string;
  engines: string[];
  /** the shared cache server's /metrics URL, when the stack runs one */
  cacheServer?: string | undefined;
  model: string;
  /** seconds between scrapes */
  intervalS: number;
}

/** prometheus.yml for the local stack, with the project's rule files. */
export function prometheusConfig(t: ScrapeTargets, ruleFiles: string[]): string {
  const host = (url: string) => new URL(url).host;
  const target = (url: string, pod: string) =>
    `      - targets: [${JSON.stringify(host(url))}]\n        labels: {namespace: local, pod: ${JSON.stringify(pod)}, switchyard_model: ${JSON.stringify(t.model)}}\n`;
  const rules = ruleFiles.map((f) => `  - ${JSON.stringify(f)}\n`).join("");
  const ms = Math.max(100, Math.round(t.intervalS * 1000));
  return (
    `# written by switchyard up --monitoring\n` +
    `global:\n  scrape_interval: ${ms}ms\n  scrape_timeout: ${Math.round(ms * 0.8)}ms\n` +
    `  evaluation_interval: ${ms}ms\n` +
    `rule_files:\n${rules}` +
    `scrape_configs:\n` +
    `  - job_name: switchyard-router\n    static_configs:\n${target(t.router, "router")}` +
    `  - job_name: switchyard-engine\n    static_configs:\n` +
    t.engines.map((u, i) => target(u, `engine-${i}`)).join("") +
    (t.cacheServer
      ? `  - job_name: switchyard-cache-server\n    static_configs:\n${target(t.cacheServer, "cache-server")}`
      : "")
  );
}

export interface RunningPrometheus {
  url: string;
  child: ChildProcess;
  configFile: string;
}

/** Starts Prometheus on host:port for the stack; its data lives in a temporary folder removed on exit. */
export async function startPrometheus(
  bin: string,
  t: ScrapeTargets,
  listen: { host: string; port: number },
  readyTimeoutMs = 30_000,
): Promise<RunningPrometheus> {
  const promDir = join(packageRoot(), "deploy", "prometheus");
  const ruleFiles = readdirSync(promDir)
    .filter((f) => f.endsWith(".rules.yaml"))
    .sort()
    .map((f) => join(promDir, f));
  const dir = mkdtempSync(join(tmpdir(), "switchyard-prometheus-"));
  const configFile = join(dir, "prometheus.yml");
  writeFileSync(configFile, prometheusConfig(t, ruleFiles));
  const child = spawn(
    bin,
    [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${join(dir, "data")}`,
      `--web.listen-address=${listen.host}:${listen.port}`,
      "--storage.tsdb.retention.time=1d",
      "--log.level=warn",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let log = "";
  child.stderr!.on("data", (b: Buffer) => (log = (log + b.toString("utf8")).slice(-4000)));
  child.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const url = `http://${listen.host}:${listen.port}`;
  const deadline = Date.now() + readyTimeoutMs;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new PeerError(
        `prometheus exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${log}`,
      );
    try {
      const res = await fetch(`${url}/-/ready`);
      await res.arrayBuffer();
      if (res.ok) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new PeerError(`prometheus was not ready at ${url} in time:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return { url, child, configFile };
}
