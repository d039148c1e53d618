// `up --autoscale MIN:MAX`: the router runs the SLO autoscaling decision (its `autoscaling:` config) and
// this process carries it out on this machine. The router finds the engines in a backends file this
// process writes (file discovery); every interval it reads GET /autoscale. More replicas asked for: a
// new sim starts on a free port and joins the file once it answers /health. Fewer: one engine leaves,
// the one holding least, and it drains: out of the file first (the router sends it nothing new from
// then on, docs/router.md), stopped only once the router no longer lists it, which it does when the
// engine holds no request. One engine drains at a time. docs/autoscaling.md#running-it.
import type { ChildProcess } from "node:child_process";
import { renameSync, writeFileSync } from "node:fs";
import { z } from "zod";
import { CliError } from "../config/args.js";
import { flag } from "../config/schema-flags.js";
import { logger } from "../obs/log.js";
import { PeerError } from "../errors/index.js";

/** The autoscaling flags of `switchyard up`: fields of its option schema (src/cli/up-options.ts). */
export const AUTOSCALE_OPTIONS = {
  autoscale: flag(z.string().optional(), {
    flag: "autoscale",
    help: "MIN:MAX: start and stop engines between MIN and MAX from the router's SLO autoscaling decision (--engines is the count it starts with, held within MIN:MAX); an engine leaving drains first",
  }),
  autoscaleInterval: flag(z.number().min(0.1).max(600).default(2), {
    flag: "autoscale-interval",
    help: "with --autoscale: seconds between decisions",
  }),
  autoscaleStartup: flag(z.number().min(0).max(3600).default(5), {
    flag: "autoscale-startup",
    help: "with --autoscale: seconds a new engine takes to serve (the decision looks this far ahead)",
  }),
  autoscaleScaleDownWindow: flag(z.number().min(0).max(3600).default(30), {
    flag: "autoscale-scale-down-window",
    help: "with --autoscale: a scale-down follows the highest count asked for over this many seconds",
  }),
  autoscaleTrendWindow: flag(z.number().min(1).max(3600).default(30), {
    flag: "autoscale-trend-window",
    help: "with --autoscale: seconds of arrival-rate history the trend is fitted over",
  }),
  autoscaleTtftP90Ms: flag(z.number().min(1).default(2000), {
    flag: "autoscale-ttft-p90-ms",
    help: "with --autoscale: the SLO's TTFT p90 in milliseconds",
  }),
  autoscaleTpotP90Ms: flag(z.number().min(1).default(100), {
    flag: "autoscale-tpot-p90-ms",
    help: "with --autoscale: the SLO's TPOT p90 in milliseconds",
  }),
};

export interface AutoscaleRange {
  min: number;
  max: number;
}

/** `--autoscale MIN:MAX`, checked; undefined when not given. */
export function autoscaleRange(flags: Record<string, unknown>): AutoscaleRange | undefined {
  const v = flags.autoscale as string | undefined;
  if (v === undefined) return undefined;
  const m = /^(\d+):(\d+)$/.exec(v.trim());
  if (!m) throw new CliError(`--autoscale: expected MIN:MAX (e.g. 1:4), got ${JSON.stringify(v)}`);
  const min = Number(m[1]);
  const max = Number(m[2]);
  if (max < 1 || max < min || max > 64)
    throw new CliError(`--autoscale ${v}: MAX must be 1 to 64 and at least MIN`);
  return { min, max };
}

/** The router's config file under --autoscale: the decision's settings and file discovery. */
export function autoscaleRouterConfig(
  flags: Record<string, unknown>,
  range: AutoscaleRange,
  backendsFile: string,
): Record<string, unknown> {
  const s = (k: string) => `${flags[k] as number}s`;
  return {
    discovery: { mode: "file", file: backendsFile },
    autoscaling: {
      enabled: true,
      minReplicas: range.min,
      maxReplicas: range.max,
      ttftP90Ms: flags["autoscale-ttft-p90-ms"],
      tpotP90Ms: flags["autoscale-tpot-p90-ms"],
      interval: s("autoscale-interval"),
      startup: s("autoscale-startup"),
      scaleDownWindow: s("autoscale-scale-down-window"),
      trendWindow: s("autoscale-trend-window"),
    },
  };
}

/** One engine this process runs: its slot (port offset), URL, process, and where it is in its life. */
export interface ScaledEngine {
  slot: number;
  url: string;
  child: ChildProcess;
  phase: "starting" | "serving" | "leaving";
  kvEvents?: string | undefined;
}

export interface ScalerDeps {
  routerUrl: string;
  /** where the router reads the engines from */
  backendsFile: string;
  range: AutoscaleRange;
  intervalMs: number;
  /** starts engine `slot` (port base + slot) and returns it, not yet ready */
  launch(slot: number): ScaledEngine;
  /** resolves once the engine answers /health; throws when it exited or never did */
  ready(e: ScaledEngine): Promise<void>;
  /** stops an engine that holds nothing (SIGTERM; it is expected to exit) */
  retire(e: ScaledEngine): Promise<void>;
}

const log = logger("up.autoscale");

/** The loop that carries the router's decision out on this machine. */
export class LocalScaler {
  readonly engines: ScaledEngine[] = [];
  /** what happened, for the summary and the tests: started, drained, stopped */
  readonly events: { at: number; what: "started" | "draining" | "stopped"; url: string }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private busy = false;
  private stopped = false;

  constructor(private readonly d: ScalerDeps) {}

  /** Adopts the engines started with the stack and writes the backends file. */
  adopt(engines: ScaledEngine[]): void {
    for (const e of engines) {
      e.phase = "serving";
      this.engines.push(e);
    }
    this.writeFile();
  }

  start(): void {
    this.timer = setInterval(() => void this.step(), this.d.intervalMs);
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** One round: read the decision, start engines or drain one, stop those drained. */
  async step(): Promise<void> {
    if (this.busy || this.stopped) return;
    this.busy = true;
    try {
      await this.finishDrains();
      const desired = await this.desired();
      if (desired === undefined || this.stopped) return;
      const active = this.engines.filter((e) => e.phase !== "leaving");
      if (desired > active.length) {
        const add = Math.min(desired, this.d.range.max) - active.length;
        await Promise.all(Array.from({ length: add }, () => this.grow()));
      } else if (desired < active.length && !this.engines.some((e) => e.phase === "leaving")) {
        await this.shrink(active);
      }
    } catch (err) {
      log.warn({ err: (err as Error).message }, "autoscale round failed; trying again next interval");
    } finally {
      this.busy = false;
    }
  }

  /** the desired count of the router's first pool (every engine serves the one model) */
  private async desired(): Promise<number | undefined> {
    const r = await this.getJson("/autoscale");
    const pools = (r as { pools?: { desired: number; reason: string }[] }).pools ?? [];
    const p = pools[0];
    return p === undefined ? undefined : Math.min(this.d.range.max, Math.max(this.d.range.min, p.desired));
  }

  private async grow(): Promise<void> {
    const used = new Set(this.engines.map((e) => e.slot));
    let slot = 0;
    while (used.has(slot)) slot++;
    const e = this.d.launch(slot);
    this.engines.push(e);
    log.info({ engine: e.url }, "autoscale: starting an engine");
    try {
      await this.d.ready(e);
    } catch (err) {
      this.engines.splice(this.engines.indexOf(e), 1);
      await this.d.retire(e);
      throw err;
    }
    if (this.stopped) return;
    e.phase = "serving";
    this.writeFile();
    this.events.push({ at: Date.now(), what: "started", url: e.url });
    process.stdout.write(`autoscale: engine ${e.url} started (${this.count()} serving)\n`);
  }

  /** the serving engine holding least leaves: out of the file, so the router drains it */
  private async shrink(active: ScaledEngine[]): Promise<void> {
    const serving = active.filter((e) => e.phase === "serving");
    // never below MIN, and never the last engine serving (a start in progress is not serving yet)
    if (serving.length <= Math.max(1, this.d.range.min)) return;
    const held = await this.inFlight();
    const e = serving.sort((a, b) => (held.get(a.url) ?? 0) - (held.get(b.url) ?? 0))[0];
    if (!e) return;
    e.phase = "leaving";
    this.writeFile();
    this.events.push({ at: Date.now(), what: "draining", url: e.url });
    process.stdout.write(`autoscale: engine ${e.url} draining (${this.count()} serving)\n`);
  }

  /** engines out of the file that the router no longer lists hold nothing: they stop */
  private async finishDrains(): Promise<void> {
    const leaving = this.engines.filter((e) => e.phase === "leaving");
    if (leaving.length === 0) return;
    const listed = await this.inFlight();
    for (const e of leaving) {
      if (listed.has(e.url)) continue;
      this.engines.splice(this.engines.indexOf(e), 1);
      await this.d.retire(e);
      this.events.push({ at: Date.now(), what: "stopped", url: e.url });
      process.stdout.write(`autoscale: engine ${e.url} stopped, it held nothing (${this.count()} serving)\n`);
    }
  }

  private count(): number {
    return this.engines.filter((e) => e.phase === "serving").length;
  }

  /** the router's engines and what each holds in flight */
  private async inFlight(): Promise<Map<string, number>> {
    const r = (await this.getJson("/engines")) as { engines?: { url: string; inFlight: number }[] };
    return new Map((r.engines ?? []).map((e) => [e.url, e.inFlight]));
  }

  private async getJson(path: string): Promise<unknown> {
    const res = await fetch(`${this.d.routerUrl}${path}`, { signal: AbortSignal.timeout(5_000) });
    if (!res.ok) throw new PeerError(`GET ${path}: HTTP ${res.status}`);
    return res.json();
  }

  /** the serving engines, written whole and renamed into place (the router never reads half a file) */
  private writeFile(): void {
    const backends = this.engines
      .filter((e) => e.phase === "serving")
      .map((e) => (e.kvEvents ? { url: e.url, kvEvents: e.kvEvents } : { url: e.url }));
    const tmp = `${this.d.backendsFile}.tmp`;
    writeFileSync(tmp, `${JSON.stringify({ backends }, null, 2)}\n`, { mode: 0o600 });
    renameSync(tmp, this.d.backendsFile);
  }
}
