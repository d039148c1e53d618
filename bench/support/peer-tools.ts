// What the peer benchmarks need outside the repository, installed once and reused:
// - peers from PyPI in virtual environments under $SWITCHYARD_PEERS_DIR (default
//   ~/.cache/switchyard/peers), one folder per pinned version, marked when complete — the same
//   folders and markers `npm run test:interop` uses, so either installs them for both;
// - Debian packages (wrk, nginx-light) through scripts/install-bench-tools.sh when missing.
// Processes the benchmarks start are tracked here and stopped by their pid.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, existsSync, mkdirSync, openSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const PEERS_DIR = process.env.SWITCHYARD_PEERS_DIR ?? join(homedir(), ".cache", "switchyard", "peers");
export const VLLM_ROUTER = "vllm-router==0.1.17";

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", timeout: 3_600_000 });
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.join(" ")} failed (${r.status}): ${(r.stderr || r.stdout || "").slice(-2000)}`,
    );
  return r.stdout;
}

/** A venv at <peers>/<name> with `packages`, installed once (the marker names what was installed). */
export function peerVenv(name: string, packages: string[]): string {
  const dir = join(PEERS_DIR, name);
  const spec = [...packages, ""].join(" ");
  const marker = join(dir, `.switchyard-${createHash("sha256").update(spec).digest("hex").slice(0, 12)}`);
  if (existsSync(marker)) return dir;
  mkdirSync(PEERS_DIR, { recursive: true });
  console.log(`installing ${packages.join(" ")} into ${dir} (once; this can take minutes)`);
  const python = process.env.PYTHON ?? "python3";
  if (!existsSync(join(dir, "bin", "python"))) run(python, ["-m", "venv", dir]);
  run(join(dir, "bin", "pip"), ["install", "--quiet", "--disable-pip-version-check", ...packages]);
  writeFileSync(marker, `${spec}\n`);
  return dir;
}

/** The vllm-router 0.1.17 binary, installed from PyPI on first use. */
export function vllmRouterBin(): string {
  return join(peerVenv("vllm-router-0.1.17", [VLLM_ROUTER]), "bin", "vllm-router");
}

const has = (bin: string) => spawnSync("sh", ["-c", `command -v ${bin}`]).status === 0;

/** wrk and nginx, installed with the Debian packages when missing. */
export function ensureBenchTools(): { wrk: string; nginx: string } {
  const nginxBin = () => ["/usr/sbin/nginx", "/usr/bin/nginx"].find((p) => existsSync(p));
  if (!has("wrk") || !nginxBin()) {
    const script = fileURLToPath(new URL("../../scripts/install-bench-tools.sh", import.meta.url));
    // run from dist/bench too: the script lives in the source tree either way
    const path = existsSync(script)
      ? script
      : fileURLToPath(new URL("../../../scripts/install-bench-tools.sh", import.meta.url));
    console.log(`wrk or nginx missing: running ${path}`);
    run("bash", [path]);
  }
  const nginx = nginxBin();
  if (!has("wrk") || !nginx) throw new Error("wrk and nginx are needed: apt-get install -y wrk nginx-light");
  return { wrk: "wrk", nginx };
}

const started = new Set<ChildProcess>();

/**
 * Starts a process writing its output straight into `log` (never through this process: a router's
 * access log would cost the benchmark's own CPU); stopped by stopAll().
 */
export function startLogged(
  cmd: string,
  args: string[],
  log: string,
  env: NodeJS.ProcessEnv = {},
): ChildProcess {
  const fd = openSync(log, "a");
  const c = spawn(cmd, args, { stdio: ["ignore", fd, fd], env: { ...process.env, ...env } });
  closeSync(fd);
  started.add(c);
  c.once("exit", () => started.delete(c));
  return c;
}

/** SIGTERM to each process started here (by its pid), SIGKILL after 10 s. */
export async function stopAll(): Promise<void> {
  await Promise.all(
    [...started].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          const t = setTimeout(() => c.kill("SIGKILL"), 10_000);
          c.once("exit", () => {
            clearTimeout(t);
            resolve();
          });
          c.kill("SIGTERM");
        }),
    ),
  );
}
