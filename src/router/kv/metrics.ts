// The metrics of cache-aware routing: decisions and predictions, the indexes' sizes, per engine whether it
// is routed from its KV events (and why not), purges, the silent-miss watchdog's verdicts, the tokenizer in
// use per model, what the KV-event collector dropped, and what the router's ZMQ sockets refused (sizes,
// unconfirmed batches, peers' counts), and where long prompts were worked out. Gauges read the live
// state at scrape time.
import { Counter, Gauge, type Metric, type Registry as PromRegistry } from "prom-client";
import { CounterFamily } from "../../obs/metric-families.js";
import type { KvEventCollector } from "../../kvevents/collector.js";
import { zmqGuardCounts } from "../../kvevents/zmq-guard.js";
import type { PrefixOracle } from "../../routing/index.js";
import type { KvIndex } from "./kv-index.js";
import type { SharedTier, SharedTiers } from "./tier-index.js";

/** What the gauges read when scraped. */
export interface CacheMetricsView {
  prefix: PrefixOracle;
  kv: KvIndex;
  /** the shared cache servers' chunk indexes */
  tiers: SharedTiers;
  /** per engine: why it is not routed by its KV events (null: it is), and whether it has a KV source */
  engines(): Iterable<{ url: string; fallback: string | null; hasSource: boolean }>;
  mode(): "prefix" | "kv" | "hybrid";
  collector(): KvEventCollector | null;
  /** long prompts worked out on the prompt thread, and on the event loop */
  longPrompts(): { answered: number; onLoop: number };
}

export type CacheMetrics = ReturnType<typeof createCacheMetrics>;

export function createCacheMetrics(prom: PromRegistry, view: CacheMetricsView) {
  // counted once a decision: children bound once per label set (../../obs/metric-families.ts)
  const decisions = new CounterFamily(
    "switchyard_routing_decisions_total",
    "cache-aware routing decisions, by policy, the picked engine's prediction source and the reason",
    ["policy", "source", "reason"],
  );
  const predicted = new CounterFamily(
    "switchyard_routing_predicted_cached_tokens_total",
    "prompt tokens the router predicted the picked engine holds, by prediction source",
    ["source"],
  );
  const prompt = new CounterFamily(
    "switchyard_routing_prompt_tokens_total",
    "prompt tokens of cache-aware routed requests (exact with a tokenizer, else estimated), by source",
    ["source"],
  );
  for (const f of [decisions, predicted, prompt]) prom.registerMetric(f as unknown as Metric);
  new Gauge({
    name: "switchyard_routing_index_entries",
    help: "blocks held by the routing indexes (prefix: character blocks; kv: KV-event block hashes, every KV-cache group; tier: the shared cache servers' LMCache chunk hashes)",
    labelNames: ["index"],
    registers: [prom],
    collect() {
      this.set({ index: "prefix" }, view.prefix.index.size);
      this.set({ index: "kv" }, view.kv.size);
      this.set(
        { index: "tier" },
        sumTiers(view.tiers, (t) => t.index.size),
      );
    },
  });
  new Gauge({
    name: "switchyard_routing_index_bytes",
    help: "estimated memory of the routing indexes",
    labelNames: ["index"],
    registers: [prom],
    collect() {
      this.set({ index: "prefix" }, view.prefix.index.approxBytes());
      this.set({ index: "kv" }, view.kv.approxBytes());
      this.set(
        { index: "tier" },
        sumTiers(view.tiers, (t) => t.index.approxBytes()),
      );
    },
  });
  new Gauge({
    name: "switchyard_routing_index_cap_bytes",
    help: "memory the routing indexes may reach at their caps (LRU eviction beyond)",
    labelNames: ["index"],
    registers: [prom],
    collect() {
      this.set({ index: "prefix" }, view.prefix.index.capBytes());
      this.set({ index: "kv" }, view.kv.capBytes());
      this.set(
        { index: "tier" },
        sumTiers(view.tiers, (t) => t.index.capBytes()),
      );
    },
  });
  new Gauge({
    name: "switchyard_routing_engine_kv_mode",
    help: "1 when the engine is routed from its KV events, 0 when by the approximate prefix index",
    labelNames: ["engine"],
    registers: [prom],
    collect() {
      this.reset();
      for (const e of view.engines()) this.set({ engine: e.url }, e.fallback === null ? 1 : 0);
    },
  });
  new Gauge({
    name: "switchyard_routing_kv_fallback",
    help: "1 for an engine whose KV events cannot be used, labelled with why (it is routed by prefix)",
    labelNames: ["engine", "reason"],
    registers: [prom],
    collect() {
      this.reset();
      const mode = view.mode();
      for (const e of view.engines())
        if (e.fallback !== null && (mode === "kv" || e.hasSource))
          this.set({ engine: e.url, reason: e.fallback }, 1);
    },
  });
  new Counter({
    name: "switchyard_routing_long_prompts_total",
    help: "long prompts (1k-128k tokens) tokenized and hashed for KV routing, by where: thread (the prompt thread) or loop (the event loop: before the thread is warm, or while it is behind)",
    labelNames: ["by"],
    registers: [prom],
    collect() {
      const s = view.longPrompts();
      this.reset();
      this.inc({ by: "thread" }, s.answered);
      this.inc({ by: "loop" }, s.onLoop);
    },
  });
  new Counter({
    name: "switchyard_routing_kv_collector_messages_total",
    help: "KV-event messages the collector (--kv-events-bind) received, by outcome: accepted, or why dropped (malformed, oversized, topic, unknown-engine, ambiguous-engine, forged: not signed with the engine's own CURVE key)",
    labelNames: ["outcome"],
    registers: [prom],
    collect() {
      const c = view.collector();
      this.reset();
      if (!c) return;
      const s = c.stats;
      let dropped = 0;
      for (const [why, n] of Object.entries(s.dropped)) {
        this.inc({ outcome: why }, n);
        if (why !== "malformed" && why !== "oversized") dropped += n;
      }
      this.inc({ outcome: "accepted" }, s.received - dropped);
    },
  });
  new Counter({
    name: "switchyard_routing_kv_dropped_group_events_total",
    help: "KV events for a KV-cache group beyond the router's limit (8 groups), dropped",
    registers: [prom],
    collect() {
      this.reset();
      this.inc(view.kv.droppedGroupEvents);
    },
  });
  new Gauge({
    name: "switchyard_routing_tier_chunks",
    help: "LMCache chunks a shared cache server holds, as its KV events say (routing.cacheServers), by server",
    labelNames: ["server"],
    registers: [prom],
    collect() {
      this.reset();
      for (const t of view.tiers.all()) this.set({ server: t.name }, t.index.size);
    },
  });
  new Gauge({
    name: "switchyard_routing_tier_events_flowing",
    help: "1 once a shared cache server's KV events have arrived since the router subscribed, by server",
    labelNames: ["server"],
    registers: [prom],
    collect() {
      this.reset();
      for (const t of view.tiers.all()) this.set({ server: t.name }, t.flowing ? 1 : 0);
    },
  });
  new Counter({
    name: "switchyard_routing_tier_index_drops_total",
    help: "chunks leaving a shared cache server's index other than by its word, by server and reason (evicted: the index's cap; purged: a gap in its events or its restart)",
    labelNames: ["server", "reason"],
    registers: [prom],
    collect() {
      this.reset();
      for (const t of view.tiers.all()) {
        this.inc({ server: t.name, reason: "evicted" }, t.index.evictions);
        this.inc({ server: t.name, reason: "purged" }, t.purgedChunks);
      }
    },
  });
  const purges = new Counter({
    name: "switchyard_routing_kv_purges_total",
    help: "times an engine's index entries were dropped, by reason (cleared, restart, gap, ejected, removed)",
    labelNames: ["engine", "reason"],
    registers: [prom],
  });
  const mismatch = new Gauge({
    name: "switchyard_routing_hit_mismatch",
    help: "1 when predicted and engine-reported prefix-cache hits differ beyond tolerance over the window",
    labelNames: ["engine"],
    registers: [prom],
  });
  const mismatchError = new Gauge({
    name: "switchyard_routing_hit_prediction_error",
    help: "|predicted − reported| / max of the two prefix-cache hit tokens over the watchdog window",
    labelNames: ["engine"],
    registers: [prom],
  });
  const tokenizer = new Gauge({
    name: "switchyard_routing_tokenizer_info",
    help: "the tokenizer the router uses per model for KV routing (source: sim:<family>, hf:<dir>, none)",
    labelNames: ["model", "source"],
    registers: [prom],
  });
  registerZmqGuardMetrics(prom);
  return { decisions, predicted, prompt, purges, mismatch, mismatchError, tokenizer };
}

function sumTiers(tiers: SharedTiers, f: (t: SharedTier) => number): number {
  let n = 0;
  for (const t of tiers.all()) n += f(t);
  return n;
}

/**
 * What the router's ZMQ sockets refused, from this process's counts (src/kvevents/zmq-guard.ts): a
 * router or worker registers them with the cache metrics, a primary of workers for its relay and peers.
 */
export function registerZmqGuardMetrics(prom: PromRegistry): void {
  const c = zmqGuardCounts;
  new Counter({
    name: "switchyard_zmq_disconnects_total",
    help: "peer connections of the router's ZMQ sockets that ended, by socket (kv-subscriber, kv-collector, kv-relay, peers): a peer that went away, or one libzmq cut off for a frame over the socket's size cap",
    labelNames: ["socket"],
    registers: [prom],
    collect() {
      this.reset();
      for (const [socket, n] of Object.entries(c.disconnects))
        if (socket !== "kv-replay") this.inc({ socket }, n);
    },
  });
  new Counter({
    name: "switchyard_zmq_oversized_messages_total",
    help: "messages of many frames, each under the size cap, whose whole was over it: dropped, by socket (kv-subscriber, kv-collector, kv-relay, kv-replay)",
    labelNames: ["socket"],
    registers: [prom],
    collect() {
      this.reset();
      for (const [socket, n] of Object.entries(c.oversized)) if (socket !== "peers") this.inc({ socket }, n);
    },
  });
  new Counter({
    name: "switchyard_zmq_auth_failures_total",
    help: "connections of the router's ZMQ sockets that failed the CURVE handshake, by socket: a publisher not holding the secret key of the configured server key (kv-subscriber), a publisher whose key is not among clients.keys or that speaks without CURVE (kv-collector, kv-relay); nothing it sent was taken",
    labelNames: ["socket"],
    registers: [prom],
    collect() {
      this.reset();
      for (const [socket, n] of Object.entries(c.authFailures))
        if (socket !== "kv-replay" && socket !== "peers") this.inc({ socket }, n);
    },
  });
  new Counter({
    name: "switchyard_routing_kv_refuted_batches_total",
    help: "KV-event batches held on one message's word (a seq jump, a seq going back, an undecodable batch) and dropped when the publisher's replay answer or its next live batch refuted them; the engine's index was kept",
    registers: [prom],
    collect() {
      this.reset();
      this.inc(c.refuted);
    },
  });
  new Counter({
    name: "switchyard_routing_peer_counts_clamped_total",
    help: "counts in other router replicas' reports cut to what one engine can plausibly hold (peers.maxReportedInFlight requests; their first-token waits and prefill bounded by those)",
    registers: [prom],
    collect() {
      this.reset();
      this.inc(c.peerCountsClamped);
    },
  });
}

/** One policy, source and reason's decision counters (bound once). */
interface DecisionSeries {
  decisions: { value: number };
  predicted: { value: number };
  prompt: { value: number };
}

/**
 * Each decision counted on its children, kept by source then reason (a few of each: the words
 * explainPick uses) under the policy deciding (a new policy starts them again): no label object or
 * key string is made a decision.
 */
export class DecisionCounts {
  private policy = "";
  private readonly bySource = new Map<string, Map<string, DecisionSeries>>();

  constructor(private readonly m: Pick<CacheMetrics, "decisions" | "predicted" | "prompt">) {}

  count(policy: string, source: string, reason: string, cachedTokens: number, promptTokens: number): void {
    if (policy !== this.policy) {
      this.policy = policy;
      this.bySource.clear();
    }
    let byReason = this.bySource.get(source);
    if (byReason === undefined) {
      byReason = new Map();
      this.bySource.set(source, byReason);
    }
    let c = byReason.get(reason);
    if (c === undefined) {
      const m = this.m;
      c = {
        decisions: m.decisions.child(policy, source, reason),
        predicted: m.predicted.child(source),
        prompt: m.prompt.child(source),
      };
      byReason.set(reason, c);
    }
    c.decisions.value++;
    if (cachedTokens > 0) c.predicted.value += cachedTokens;
    if (promptTokens > 0) c.prompt.value += promptTokens;
  }
}
