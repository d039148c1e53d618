// The router of a simulated fleet: what the live router would know and do, in virtual time. It keeps
// one EngineView per engine — its own in-flight counts, always current, and the engines' gauges as of
// its last scrape (every `scrapeIntervalS`, so they go stale in between as they do live) — and decides
// with the routing library's policies (src/routing), fed by the oracle the live router would have. Each
// request's session key is worked out as the live router's edge does (src/routing/sessions/session-identity.ts):
// from the header the live bench would send, else inferred from the prompt, so that the policy sees the
// sessions it sees live; under a policy that reads no session key only the header's, as live.
import type { Engine, VirtualDriver } from "../engine/index.js";
import {
  createPolicy,
  defaultPolicySettings,
  policyOptions,
  policyReadsPrefixOnly,
  decide,
  WAITING_ROOM_DEFAULTS,
  idleEngineView,
  PrefixOracle,
  policyReadsKv,
  policyReadsSessions,
  rooflineTiming,
  SessionTracker,
  noteDone,
  noteFirstToken,
  noteScraped,
  noteSent,
  type CacheOracle,
  type EngineTiming,
  type EngineView,
  type LateBindingOptions,
  type Policy,
  type PolicySettings,
  type PolicyName,
  type ScorersConfig,
  type RequestView,
} from "../routing/index.js";
import { chatMessages, completionPrompt } from "../workload/types.js";
import { mulberry32 } from "../random/rng.js";
import type { Turn } from "./load.js";
import { EngineProbeOracle } from "./oracle.js";
import type { SharedCacheServer } from "./remote.js";
import { InvariantError } from "../errors/index.js";

/**
 * Where a request's session key comes from. `router`: as the live router keys it by default, its session
 * tracker over what `switchyard bench` sends (the `x-session-id` header where the workload sends one,
 * else the prompt, which a later turn extends). `session` / `group`: the header carries the session id
 * or its workload group (a tenant: what a plan tells operators to send for the `session` policy), read
 * by the same tracker. `none`: no key at all (a router with inference off and no header).
 */
export type SessionKeyMode = "router" | "none" | "session" | "group";

/** RouterView.route: the turn waits for room the policy holds it for */
export const ROUTE_WAITING = -2;
/** RouterView.route: the turn would wait, but as many as the live router's queue holds wait already */
export const ROUTE_QUEUE_FULL = -3;

/** what a request refused by the TTFT SLO is told */
export const SLO_REFUSAL = "no engine is predicted to meet the TTFT SLO";
/** what a request refused by a full wait queue is told (the live queue's words) */
export const QUEUE_FULL_REFUSAL = "the router's wait queue is full";

/** a turn being decided, or waiting to be decided again: its view and when it arrived (s) */
interface Waiting {
  turn: Turn;
  req: RequestView;
  r: number;
  at: number;
}

export interface RouterOptions {
  policy: PolicyName;
  sessionKey: SessionKeyMode;
  /** the workload sends the session id header (`Workload.sessionHeader`, as src/bench's client does) */
  sessionHeader: boolean;
  /** the live router scrapes vllm:num_requests_running/waiting and kv_cache_usage_perc this often */
  scrapeIntervalS: number;
  /** the workload is sent to the chat endpoint (what the prefix oracle renders) */
  chat: boolean;
  /** predictive policy: a TTFT SLO every request carries, ms (refused when no engine can meet it) */
  sloTtftMs?: number | undefined;
  /**
   * router processes deciding over the group's counts (`--workers N`): each has its own policy state
   * (prefill ledger, learned speeds), and each request goes to one of them at random, as connections
   * spread over workers. 1: one router.
   */
  routers?: number | undefined;
  /** picks which router process a request reaches (routers > 1) */
  seed?: number | undefined;
  /** scorers added to the policy's own, as the router's config `scorers` */
  scorers?: ScorersConfig | undefined;
  /** predictive: late binding's settings, as the router's `predictive.queuedPrompts` and the rest */
  lateBinding?: Partial<LateBindingOptions> | undefined;
  /** the decision log: told of every decision with what the policy predicted per engine */
  onDecision?: ((d: FleetDecision) => void) | undefined;
  /** the shared cache server each engine loads from, when the router reads their tier index; null: blind */
  tier?: readonly SharedCacheServer[] | null | undefined;
  /** the engines' ids (default http://engine-0, ...): a policy that hashes them places by them */
  engineIds?: readonly string[] | undefined;
  /** a policy object in place of `policy` (one per router process), e.g. a LoRA placement's */
  makePolicy?: (() => Policy) | undefined;
  /** a LoRA fleet's router-side books (src/fleet/lora.ts): what each request names, what it scrapes */
  lora?: RouterLoraHooks | undefined;
}

/** what a LoRA fleet's books add to the router (src/fleet/lora.ts) */
export interface RouterLoraHooks {
  /** names the turn's adapter on its request view (model and lora) */
  request(turn: Turn, req: RequestView): void;
  /** before each decision (a clairvoyant reading takes the engines' exact state) */
  beforeDecide?(): void;
  /** the router scraped engine `e` (vllm:lora_requests_info with the queue gauges) */
  scraped(e: number): void;
}

/**
 * One routing decision as the decision log sees it: per engine (by index; NaN where the policy predicts
 * nothing or the engine was not a candidate) what the policy predicted, and what the engine was doing.
 */
export interface FleetDecision {
  /** the request's index (FleetResult.routedTo, records) */
  index: number;
  sessionId: string;
  round: number;
  /** the session key the router worked out for it (undefined: none) */
  sessionKey: string | undefined;
  /** virtual seconds */
  at: number;
  promptTokens: number;
  /** the engine picked; -1: refused over the SLO */
  picked: number;
  /** prompt tokens the policy credited as cached there */
  cachedTokens: Float64Array;
  /** predicted TTFT, ms */
  ttftMs: Float64Array;
  /** the cost the policy minimised */
  cost: Float64Array;
  /** the router's requests awaiting a first token, and in flight */
  awaiting: Int32Array;
  inFlight: Int32Array;
  /** the engine's KV in use by its requests now (not the cached, evictable part), 0..1 */
  kvUsage: Float64Array;
  /** the same as the router last scraped it (what the policy saw, and what a live router logs) */
  scrapedKvUsage: Float64Array;
  /** prompt tokens the engine holds cached now (asked of the engine, whatever the policy knows) */
  heldTokens: Float64Array;
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
  /** one policy per router process (its own state); all read the same views, the group's counts */
  private readonly policies: Policy[] = [];
  /** per router process, its edge's session tracker (a router worker's ingress has its own) */
  private readonly trackers: SessionTracker[] = [];
  /** the policy reads session keys: the trackers infer and record (else they only read the header) */
  private readonly tracking: boolean;
  private readonly rand: () => number;
  /** routers > 1: per router, its own requests awaiting a first token on each engine */
  private readonly ownAwaiting: Int32Array[] = [];
  /** routers > 1: the router each outstanding request was routed by, by request index */
  private readonly routerOf = new Map<number, number>();
  private readonly probe: EngineProbeOracle | null;
  private readonly prefixOracle: PrefixOracle | null;
  /** requests sent and not yet finished, fleet-wide */
  private outstanding = 0;
  /** turns the policy holds (decide said "saturated"), oldest first */
  private readonly waiting: Waiting[] = [];
  /** routed requests not yet finished: their view and when they arrived (calibration, paused sessions) */
  private readonly routed = new Map<number, { req: RequestView; at: number; policy: Policy }>();

  /**
   * an autoscaled fleet's engines that may take a new request, by index (src/fleet/autoscale.ts sets
   * it); null: every engine
   */
  routable: boolean[] | null = null;

  constructor(
    private readonly o: RouterOptions,
    private readonly model: string,
    private readonly engines: readonly Engine[],
    private readonly driver: VirtualDriver,
    /** whether more requests may still come (the scrape loop stops once none can) */
    private readonly loadDone: () => boolean,
  ) {
    for (let e = 0; e < engines.length; e++) {
      const id = o.engineIds?.[e] ?? `http://engine-${e}`;
      this.views.push(
        idleEngineView(id, new Set([model]), {
          blockSize: engines[e]!.config.blockSize,
          awaitingFirstToken: 0,
        }),
      );
    }
    // cache-aware policies get the oracle the live router would have (src/fleet/oracle.ts)
    this.probe = policyReadsKv(o.policy)
      ? new EngineProbeOracle(
          engines,
          this.views.map((v) => v.id),
          o.tier ?? null,
        )
      : null;
    this.prefixOracle = policyReadsPrefixOnly(o.policy) ? new PrefixOracle() : null;
    const cache: CacheOracle | undefined = this.probe ?? this.prefixOracle ?? undefined;
    // predictive: every engine's timing is the engine model's own (src/engine's roofline)
    const timing = new Map<string, EngineTiming>();
    for (let e = 0; e < engines.length; e++)
      timing.set(this.views[e]!.id, rooflineTiming(engines[e]!.config));
    // a router configured as the scenario says (the rest its defaults), its options built by the live
    // router's function; the fleet reports every completion (onDone) as the live proxy sees each end
    const defaults = defaultPolicySettings();
    const settings: PolicySettings = {
      ...defaults,
      predictive: { ...defaults.predictive, ...o.lateBinding },
      slo: { ...defaults.slo, ...(o.sloTtftMs !== undefined ? { ttftMs: o.sloTtftMs } : {}) },
      scorers: o.scorers ?? [],
    };
    for (let r = 0; r < (o.routers ?? 1); r++)
      this.policies.push(
        o.makePolicy
          ? o.makePolicy()
          : createPolicy(o.policy, policyOptions(settings, { cache, timing: (v) => timing.get(v.id) })),
      );
    // the router's default session settings; keys prefixed per process as a worker's are
    this.tracking = policyReadsSessions(o.policy);
    if (o.sessionKey !== "none")
      for (let r = 0; r < this.policies.length; r++)
        this.trackers.push(new SessionTracker({ namespace: `${r}.` }));
    this.rand = mulberry32(o.seed ?? 1);
    if (this.policies.length > 1)
      for (let r = 0; r < this.policies.length; r++) this.ownAwaiting.push(new Int32Array(engines.length));
  }

  start(): void {
    this.driver.at(0, this.scrape);
  }

  /**
   * the engine (by index) the policy picks for a turn; -1: refused, no engine can meet its SLO;
   * ROUTE_WAITING: the policy holds it (no engine has room it will give), as the live router's admission
   * queue holds it, until `retryWaiting` finds it one
   */
  route(turn: Turn): number {
    const a = turn.active;
    const o = this.o;
    const n = this.policies.length;
    const r = n === 1 ? 0 : Math.floor(this.rand() * n);
    const header =
      o.sessionKey === "session" || (o.sessionKey === "router" && o.sessionHeader)
        ? a.session.id
        : o.sessionKey === "group"
          ? groupOf(a.session.id)
          : undefined;
    const tracker = this.trackers[r];
    // the prompt as the live router reads it: chat messages or the completions prompt (earlier answers
    // are not kept as text here, so a multi-round history matches up to its first answer; a later turn
    // still extends the one before it, which is what inference needs)
    const cacheAware = this.prefixOracle !== null || this.probe !== null;
    const needsPrompt = cacheAware || (this.tracking && tracker !== undefined && header === undefined);
    const messages = needsPrompt && o.chat ? chatMessages(a.session, a.round, []) : undefined;
    const prompt = needsPrompt && !o.chat ? completionPrompt(a.session, a.round, []) : undefined;
    // as the live edge (src/router/edge/ingress.ts): a policy that reads no session key gets the
    // header's, and nothing is inferred or recorded for it
    const named = {
      header,
      body: header === undefined && this.tracking ? (messages ? { messages } : { prompt }) : undefined,
    };
    const sessionKey = (
      this.tracking ? tracker?.identify(named, this.driver.now * 1000) : tracker?.named(named)
    )?.key;
    // the body's max_tokens, as the live router's view carries the request's body
    const req: RequestView = {
      model: this.model,
      seq: turn.index,
      sessionKey,
      body: { max_tokens: turn.maxTokens },
    };
    if (cacheAware) {
      if (messages) req.messages = messages;
      else req.prompt = prompt;
    }
    o.lora?.request(turn, req);
    return this.decideTurn({ turn, req, r, at: this.driver.now });
  }

  private decideTurn(w: Waiting): number {
    const { turn, req, r } = w;
    const n = this.policies.length;
    const probe = this.probe;
    if (probe) probe.current = { tokens: turn.prompt, sharedPrefix: turn.sharedPrefix };
    const policy = this.policies[r]!;
    if (n > 1) this.showPeers(r);
    // an autoscaled fleet routes over its serving engines only: a starting or draining one gets nothing
    const routable = this.routable;
    const views = routable ? this.views.filter((_, e) => routable[e]) : this.views;
    this.o.lora?.beforeDecide?.();
    const d = decide(policy, req, { engines: views, now: this.driver.now * 1000 });
    if (probe) probe.current = null;
    if (d.kind === "saturated") {
      // as the live queue refuses a request that finds it full
      if (this.waiting.length >= WAITING_ROOM_DEFAULTS.size) {
        policy.onLeftQueue?.(req);
        return ROUTE_QUEUE_FULL;
      }
      this.waiting.push(w);
      if (this.waiting.length === 1) this.armRecheck(policy.recheckMs);
      return ROUTE_WAITING;
    }
    if (this.o.onDecision) this.logDecision(turn, policy, req, d.kind === "picked" ? d.engine : undefined);
    if (d.kind === "over-slo") return -1;
    if (d.kind !== "picked") throw new InvariantError(`routing failed: ${d.kind}`);
    // timed from the request's arrival, as the live proxy times a request that waited in its queue
    if (policy.onFirstToken || policy.onDone) this.routed.set(turn.index, { req, at: w.at, policy });
    if (n > 1) this.routerOf.set(turn.index, r);
    return this.views.indexOf(d.engine as EngineView & { models: Set<string> });
  }

  /**
   * Decides the waiting turns again in arrival order, each on its own (the live admission queue without
   * tenants, which under a policy that holds requests one by one lets a held one's followers by it);
   * each one that finds an engine is handed to `start` with the time it arrived. One that has waited the
   * live router's queue timeout is refused, as its queue refuses it (429).
   */
  retryWaiting(
    start: (turn: Turn, engine: number, arrivedAt: number) => void,
    refuse: (turn: Turn, arrivedAt: number, why: string) => void,
  ): void {
    if (this.waiting.length === 0) return;
    const queued = this.waiting.splice(0);
    for (const w of queued) {
      if ((this.driver.now - w.at) * 1000 >= WAITING_ROOM_DEFAULTS.timeoutMs) {
        this.policies[w.r]!.onLeftQueue?.(w.req);
        refuse(w.turn, w.at, `no engine had room within ${WAITING_ROOM_DEFAULTS.timeoutMs} ms`);
        continue;
      }
      const e = this.decideTurn(w);
      if (e >= 0) start(w.turn, e, w.at);
      else if (e === -1) refuse(w.turn, w.at, SLO_REFUSAL);
    }
  }

  get hasWaiting(): boolean {
    return this.waiting.length > 0;
  }

  /** turns wait that a first token may let go (a policy that binds late), as the live router retries them */
  get waitsOnFirstTokens(): boolean {
    return this.waiting.length > 0 && this.policies.some((p) => p.roomAtFirstToken);
  }

  /** set by the fleet: retried while turns wait (the live queue's recheck timer) */
  onRecheck: (() => void) | undefined;

  private recheckArmed = false;

  private armRecheck(ms: number | undefined): void {
    if (!ms || ms <= 0 || this.recheckArmed) return;
    this.recheckArmed = true;
    const tick = (): void => {
      if (this.waiting.length > 0) this.onRecheck?.();
      if (this.waiting.length === 0) {
        this.recheckArmed = false;
        return;
      }
      this.driver.at(this.driver.now + ms / 1000, tick);
    };
    this.driver.at(this.driver.now + ms / 1000, tick);
  }

  private logDecision(turn: Turn, policy: Policy, req: RequestView, picked: EngineView | undefined): void {
    const n = this.views.length;
    const x = policy.explain?.(req);
    const d: FleetDecision = {
      index: turn.index,
      sessionId: turn.active.session.id,
      round: turn.active.round,
      sessionKey: req.sessionKey,
      at: this.driver.now,
      promptTokens: turn.prompt.length,
      picked: picked ? this.views.indexOf(picked as EngineView & { models: Set<string> }) : -1,
      cachedTokens: new Float64Array(n).fill(NaN),
      ttftMs: new Float64Array(n).fill(NaN),
      cost: new Float64Array(n).fill(NaN),
      awaiting: new Int32Array(n),
      inFlight: new Int32Array(n),
      kvUsage: new Float64Array(n),
      scrapedKvUsage: new Float64Array(n),
      heldTokens: new Float64Array(n),
    };
    for (let e = 0; e < n; e++) {
      const v = this.views[e]!;
      d.awaiting[e] = v.awaitingFirstToken ?? 0;
      d.inFlight[e] = v.inFlight;
      d.kvUsage[e] = this.engines[e]!.snapshot().kvCacheUsage;
      d.scrapedKvUsage[e] = v.kvUsage;
      d.heldTokens[e] = this.engines[e]!.probeCachedTokens(turn.prompt, { sharedPrefix: turn.sharedPrefix });
    }
    if (x)
      for (let i = 0; i < x.engines.length; i++) {
        const e = this.views.indexOf(x.engines[i] as EngineView & { models: Set<string> });
        if (e < 0) continue;
        d.cachedTokens[e] = x.cachedTokens[i]!;
        d.cost[e] = x.cost[i]!;
        if (x.ttftMs) d.ttftMs[e] = x.ttftMs[i]!;
      }
    this.o.onDecision!(d);
  }

  /**
   * What router `r` knows of its peers on each engine as it decides: in virtual time their exact
   * counts and queued prefill (a live group's reports bring them within a turn of the event loop).
   */
  private showPeers(r: number): void {
    const own = this.ownAwaiting;
    for (let e = 0; e < this.views.length; e++) {
      const v = this.views[e]!;
      const group = v.awaitingFirstToken ?? 0;
      let tokens = 0;
      for (let j = 0; j < own.length; j++) {
        if (j === r) continue;
        // router j's ledger trims by its own count, as j itself would
        v.peerAwaitingFirstToken = group - own[j]![e]!;
        tokens += this.policies[j]!.queuedPrefillTokens?.(v) ?? 0;
      }
      v.peerAwaitingFirstToken = group - own[r]![e]!;
      v.peerPrefillTokens = tokens;
    }
  }

  /** request `index` went to engine `e` */
  sent(e: number, index: number): void {
    noteSent(this.views[e]!, this.driver.now * 1000);
    this.outstanding++;
    const r = this.routerOf.get(index);
    if (r !== undefined) this.ownAwaiting[r]![e]!++;
  }

  /** router > 1: request `index` no longer awaits its first token on `e` */
  private answeredBy(e: number, index: number): void {
    const r = this.routerOf.get(index);
    if (r !== undefined && this.ownAwaiting[r]![e]! > 0) this.ownAwaiting[r]![e]!--;
  }

  /** the first token of request `index` on engine `e` came back (a streamed answer's first byte) */
  firstToken(e: number, index: number): void {
    const v = this.views[e]!;
    noteFirstToken(v, this.driver.now * 1000);
    this.answeredBy(e, index);
    const a = this.routed.get(index);
    a?.policy.onFirstToken?.(a.req, v, (this.driver.now - a.at) * 1000);
  }

  /** request `index` on engine `e` finished (`answered`: its first token came back before) */
  done(e: number, index: number, answered: boolean): void {
    const a = this.routed.get(index);
    if (a) {
      this.routed.delete(index);
      a.policy.onDone?.(a.req, this.views[e]!, (this.driver.now - a.at) * 1000);
    }
    if (!answered) this.answeredBy(e, index);
    this.routerOf.delete(index);
    noteDone(this.views[e]!, answered, this.driver.now * 1000);
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
      noteScraped(v, this.driver.now * 1000);
      this.o.lora?.scraped(e);
      this.kvSamples.push(s.kvCacheUsage);
    }
    if (!this.loadDone() || this.outstanding > 0 || this.waiting.length > 0)
      this.driver.after(this.o.scrapeIntervalS, this.scrape);
  };
}
