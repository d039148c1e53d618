// The router of a simulated fleet: what the live router would know and do, in virtual time. It keeps
// one EngineView per engine — its own in-flight counts, always current, and the engines' gauges as of
// its last scrape (every `scrapeIntervalS`, so they go stale in between as they do live) — and decides
// with the routing library's policies (src/routing), fed by the oracle the live router would have.
import type { Engine, VirtualDriver } from "../engine/index.js";
import {
  createPolicy,
  decide,
  idleEngineView,
  PrefixOracle,
  type CacheOracle,
  type EngineView,
  type Policy,
  type PolicyName,
  type RequestView,
} from "../routing/index.js";
import { chatMessages, completionPrompt } from "../workload/types.js";
import type { Turn } from "./load.js";
import { EngineProbeOracle } from "./oracle.js";

export interface RouterOptions {
  policy: PolicyName;
  /** what the router's session-affinity key carries: none, the session id, or the workload group */
  sessionKey: "none" | "session" | "group";
  /** the live router scrapes vllm:num_requests_running/waiting and kv_cache_usage_perc this often */
  scrapeIntervalS: number;
  /** the workload is sent to the chat endpoint (what the prefix oracle renders) */
  chat: boolean;
}

/** the group part of a workload's session id (`g12-q3` → `g12`, `user-4` → `user-4`) */
function groupOf(id: string): string {
  const dash = id.indexOf("-");
  return /^[gp]\d+-/.test(id) ? id.slice(0, dash) : id;
}

export class RouterView {
  readonly views: (EngineView & { models: Set<string> })[] = [];
  /** every engine's scraped kv_cache_usage_perc samples, 0..1 */
  readonly kvSamples: number[] = [];
  private readonly policy: Policy;
  private readonly probe: EngineProbeOracle | null;
  private readonly prefixOracle: PrefixOracle | null;
  /** requests sent and not yet finished, fleet-wide */
  private outstanding = 0;

  constructor(
    private readonly o: RouterOptions,
    private readonly model: string,
    private readonly engines: readonly Engine[],
    private readonly driver: VirtualDriver,
    /** whether more requests may still come (the scrape loop stops once none can) */
    private readonly loadDone: () => boolean,
  ) {
    for (let e = 0; e < engines.length; e++) {
      const id = `http://engine-${e}`;
      this.views.push(idleEngineView(id, new Set([model]), { blockSize: engines[e]!.config.blockSize }));
    }
    // cache-aware policies get the oracle the live router would have (src/fleet/oracle.ts)
    this.probe =
      o.policy === "kv" || o.policy === "hybrid"
        ? new EngineProbeOracle(
            engines,
            this.views.map((v) => v.id),
          )
        : null;
    this.prefixOracle = o.policy === "prefix" ? new PrefixOracle() : null;
    const cache: CacheOracle | undefined = this.probe ?? this.prefixOracle ?? undefined;
    this.policy = createPolicy(o.policy, cache ? { cache } : {});
  }

  start(): void {
    this.driver.at(0, this.scrape);
  }

  /** the engine (by index) the policy picks for a turn */
  route(turn: Turn): number {
    const a = turn.active;
    const o = this.o;
    const sessionKey =
      o.sessionKey === "none" ? undefined : o.sessionKey === "group" ? groupOf(a.session.id) : a.session.id;
    const req: RequestView = { model: this.model, seq: turn.index, sessionKey };
    if (this.prefixOracle) {
      // the text the live router renders: chat messages or the completions prompt (earlier answers are
      // not kept as text here, so a multi-round history matches up to its first answer)
      const answers: string[] = [];
      if (o.chat) req.messages = chatMessages(a.session, a.round, answers);
      else req.prompt = completionPrompt(a.session, a.round, answers);
    }
    const probe = this.probe;
    if (probe) probe.current = { tokens: turn.prompt, sharedPrefix: turn.sharedPrefix };
    const d = decide(this.policy, req, { engines: this.views });
    if (probe) probe.current = null;
    if (d.kind !== "picked") throw new Error(`routing failed: ${d.kind}`);
    return this.views.indexOf(d.engine as EngineView & { models: Set<string> });
  }

  /** a request went to engine `e` */
  sent(e: number): void {
    this.views[e]!.inFlight++;
    this.outstanding++;
  }

  /** a request on engine `e` finished */
  done(e: number): void {
    this.views[e]!.inFlight--;
    this.outstanding--;
  }

  // engine metrics as of the last scrape; the router's own in-flight counts are always current
  private readonly scrape = (): void => {
    const engines = this.engines;
    for (let e = 0; e < engines.length; e++) {
      const s = engines[e]!.snapshot();
      const v = this.views[e]!;
      v.running = s.numRunning;
      v.waiting = s.numWaiting;
      v.kvUsage = s.kvCacheUsage;
      this.kvSamples.push(s.kvCacheUsage);
    }
    if (!this.loadDone() || this.outstanding > 0) this.driver.after(this.o.scrapeIntervalS, this.scrape);
  };
}
