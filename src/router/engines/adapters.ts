// LoRA adapters the router manages: a registry (`--lora-dir DIR`, each subfolder a PEFT adapter named
// by its folder; `--lora-adapter` or config `lora.adapters` for folders elsewhere and Hub repositories),
// what each engine holds (its /v1/models, its vllm:lora_requests_info, the router's own loads and
// requests), and the loads themselves through the engine's own API (POST /v1/load_lora_adapter, which
// vLLM serves with VLLM_ALLOW_RUNTIME_LORA_UPDATING): one load per adapter and engine at a time,
// requests for it waiting on that load; before a load the least used idle adapter there is unloaded
// when the engine would otherwise hold more than max_cpu_loras; a failed or stuck load is an error for
// the requests waiting on it, never a hang. Clients never name a path: only registry adapters are
// loaded. With tenants, a load is charged to the tenant whose request caused it (before it starts), a
// tenant over its weighted share of an engine's slots may not push out the adapters others use, and a
// failed load is remembered per adapter and engine with a backoff; its client hears which adapter and
// an id to quote, never the path, the Hub id or the engine (those go to the log and /engines).
import { randomBytes } from "node:crypto";
import { LruMap } from "../../collections/lru-map.js";
import { HttpError } from "../../http/errors.js";
import { logger } from "../../obs/log.js";
import type { AdapterUse, EngineLoraView, LoraRequestView } from "../../routing/index.js";
import { emptyLoraBooks, evictionVictim, noteAdapterUse } from "../../routing/lora.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRecord } from "./engine-record.js";
import { discard } from "./engine-get.js";
import { probeHeaders } from "./upstream-rules.js";
import type { EngineLora } from "./scrape.js";
import { PeerError } from "../../errors/index.js";
import { AdapterCatalog, type AdapterEntry } from "./adapter-catalog.js";
export {
  AdapterCatalog,
  MAX_ADAPTERS,
  type AdapterConfigEntry,
  type AdapterEntry,
} from "./adapter-catalog.js";

const log = logger("lora");

/** a load that has not answered in this long fails the requests waiting on it */
export const LOAD_TIMEOUT_MS = 120_000;
/** the engine's disk rate the router prices loads at; the load API's round trip beside it */
const ASSUMED_DISK_BPS = 1e9;
const ASSUMED_LINK_BPS = 25e9;
const LOAD_OVERHEAD_S = 0.05;

/** weight of the newest load in the learned rate (about the last 10 loads count) */
const LOAD_RATE_WEIGHT = 0.1;

/**
 * After a load of `bytes` took `seconds` (the load API's whole answer: read, copy and round trip), cold
 * loads there are priced at that engine's measured seconds per byte rather than the assumed disk and
 * link rates: disks, links and a scaled sim's clock differ, and the price must be in the same seconds as
 * the queue it is weighed against (which the policy learns from answers).
 */
export function learnLoadRate(view: EngineLoraView, bytes: number, seconds: number): void {
  if (!(bytes > 0) || !(seconds > 0)) return;
  const measured = bytes / seconds;
  const first = view.linkBps !== Infinity;
  // the first measurement replaces the assumption; later ones move an average of the rate
  const rate = first ? measured : 1 / ((1 - LOAD_RATE_WEIGHT) / view.diskBps + LOAD_RATE_WEIGHT / measured);
  view.diskBps = rate;
  view.linkBps = Infinity;
  view.loadOverheadS = 0;
}

/** an engine's adapters as the router keeps them: the view policies read, and what is in flight */
interface EngineBooks {
  view: EngineLoraView & {
    loaded: LruMap<string, true>;
    loading: Set<string>;
    inFlight: Map<string, number>;
    lastSentAt: Map<string, number>;
    /** the router's use of each adapter there: one entry per registry adapter at most, gone when unloaded */
    uses: Map<string, AdapterUse>;
  };
  /** loads in flight, by adapter: the one promise every request for it waits on */
  pending: Map<string, Promise<void>>;
  /**
   * when the router last loaded or unloaded each adapter there (ms, performance.now()): a /v1/models
   * answer read before that change says nothing about it, so the books keep the router's own word for
   * a while (bounded: an entry goes when it is older than SYNC_GRACE_MS at the next scrape)
   */
  changedAt: Map<string, number>;
  /** the tenant whose request last used each adapter there ("" without tenancy): who holds its slot */
  holder: Map<string, string>;
  /** failed loads there, by adapter (registry names only: bounded by the registry) */
  failed: Map<string, LoadFailure>;
  /**
   * requests waiting for room there (every adapter loaded has requests in flight, or is loading): woken
   * when a request there ends or a load settles; one entry per waiting request at most
   */
  waiters: (() => void)[];
}

/** a failed load remembered: no new attempt there before `until` */
interface LoadFailure {
  /** the id its clients may quote (the log line and /engines carry it with the details) */
  id: string;
  /** performance.now() ms */
  until: number;
  attempts: number;
  /** the engine's answer, for the log and /engines only */
  error: string;
}

/** the first backoff after a failed load, doubled for each failure after it, up to the most */
export const LOAD_FAILURE_BACKOFF_MS = 10_000;
export const LOAD_FAILURE_BACKOFF_MAX_MS = 300_000;
/** an adapter used this recently by a tenant (or with requests in flight) is in use by it */
export const ADAPTER_IN_USE_MS = 30_000;

/** who a request's load is for: its tenant, the tenant's weight, and the charge of a load to it */
export interface LoadRequester {
  /** the tenant's name ("" without tenancy) */
  tenant: string;
  weight: number;
  /** charges one load to the tenant before it starts; throws its 429 (adapterLoadsPerMinute) */
  charge?: (() => void) | undefined;
  /** the weight of a tenant by name (others holding the engine's slots) */
  weightOf?: ((tenant: string) => number) | undefined;
}

/** adapter names one list of an engine's residency row carries at most (the most recent, for loaded) */
export const RESIDENCY_NAMES = 64;

/**
 * An engine's adapters as `GET /engines` shows them: GPU slots (max_loras, vllm:lora_requests_info's
 * max_lora) and host cache (max_cpu_loras), the adapters loaded there (the router's books: the engine's
 * /v1/models and its own loads, oldest first), loading, and running or waiting in its scheduler
 */
export interface LoraResidencyRow {
  maxLoras: number;
  maxCpuLoras: number | null;
  loaded: string[] | null;
  loadedCount: number | null;
  loading: string[];
  running: string[];
  waiting: string[];
  /** failed loads in their backoff: the adapter, the id its clients were given, the engine's answer */
  failures?: { adapter: string; id: string; error: string; attempts: number; retryInMs: number }[];
}

/**
 * The residency row of an engine: the router's books where it manages adapters, else what the engine
 * reports in vllm:lora_requests_info (its statically loaded adapters are in its model list); null when
 * the engine serves no LoRA
 */
export function loraResidency(e: EngineRecord, loader: AdapterLoader | null): LoraResidencyRow | null {
  const row = loader?.residency(e) ?? null;
  if (row) return row;
  const l = e.load.lora;
  if (!l) return null;
  return {
    maxLoras: l.maxLora,
    maxCpuLoras: null,
    loaded: null,
    loadedCount: null,
    loading: [],
    running: l.running.slice(0, RESIDENCY_NAMES),
    waiting: l.waiting.slice(0, RESIDENCY_NAMES),
  };
}

/** how long the router's own load or unload outranks what the engine's /v1/models says, ms */
const SYNC_GRACE_MS = 10_000;

export interface AdapterStats {
  loads: number;
  loadFailures: number;
  unloads: number;
  loadSecondsTotal: number;
  /** loads by the tenant whose request caused them ("" without tenancy) */
  loadsByTenant: Map<string, number>;
}

/**
 * The router's books of every engine's adapters and the loads it makes. The engine views it fills
 * (`EngineView.lora`) are what the routing policies read.
 */
export class AdapterLoader {
  readonly stats: AdapterStats = {
    loads: 0,
    loadFailures: 0,
    unloads: 0,
    loadSecondsTotal: 0,
    loadsByTenant: new Map(),
  };
  /** requests routed per registry adapter since the router started (at most the registry's size) */
  readonly requests = new Map<string, number>();
  private readonly books = new Map<string, EngineBooks>();

  constructor(
    readonly registry: AdapterCatalog,
    private readonly cfg: () => RouterConfig,
    /** the engines' max_cpu_loras when the config names it; else their scraped max_lora */
    private readonly maxCpuLoras: number | undefined,
  ) {}

  /** the request's view of a registry adapter (undefined: not one) */
  requestView(name: string): LoraRequestView | undefined {
    const a = this.registry.get(name);
    return a ? { name: a.name, path: a.path, base: a.base ?? "", bytes: a.bytes } : undefined;
  }

  private booksOf(e: EngineRecord): EngineBooks {
    let b = this.books.get(e.url);
    if (!b) {
      b = {
        view: emptyLoraBooks({
          maxLoras: 1,
          maxCpuLoras: this.maxCpuLoras ?? 1,
          diskBps: ASSUMED_DISK_BPS,
          linkBps: ASSUMED_LINK_BPS,
          loadOverheadS: LOAD_OVERHEAD_S,
        }),
        pending: new Map(),
        changedAt: new Map(),
        holder: new Map(),
        failed: new Map(),
        waiters: [],
      };
      this.books.set(e.url, b);
      e.view.lora = b.view;
    }
    return b;
  }

  /**
   * A scrape's vllm:lora_requests_info and the engine's /v1/models: registry adapters it lists are
   * loaded there (touched, not reordered), ones it no longer lists are not (unless a load is in flight)
   */
  applyScrape(e: EngineRecord, lora: EngineLora | undefined): void {
    const b = this.booksOf(e);
    if (lora) {
      b.view.maxLoras = lora.maxLora;
      if (this.maxCpuLoras === undefined) b.view.maxCpuLoras = Math.max(b.view.maxCpuLoras, lora.maxLora);
      b.view.running = new Set(lora.running);
      b.view.waiting = new Set(lora.waiting);
    }
    const now = performance.now();
    for (const [n, at] of b.changedAt) if (now - at > SYNC_GRACE_MS) b.changedAt.delete(n);
    for (const m of e.view.models)
      if (this.registry.get(m) && !b.view.loaded.has(m) && !b.changedAt.has(m)) b.view.loaded.set(m, true);
    for (const x of b.view.loaded.oldestFirst())
      if (!e.view.models.has(x.key) && !b.view.loading.has(x.key) && !b.changedAt.has(x.key)) {
        b.view.loaded.delete(x.key);
        b.view.uses.delete(x.key);
        b.holder.delete(x.key);
      }
    // the engine's list, corrected by the router's recent word, is what routing reads
    for (const [n] of b.changedAt) {
      if (b.view.loaded.has(n)) e.view.models.add(n);
      else e.view.models.delete(n);
    }
  }

  /** the router sent a request for `name` to `e` (its slot-wait and eviction books) */
  noteSent(e: EngineRecord, name: string, nowMs: number, tenant = ""): void {
    // only registry adapters are sent here, so the counts hold at most the registry's names
    this.requests.set(name, (this.requests.get(name) ?? 0) + 1);
    const b = this.booksOf(e);
    b.view.inFlight.set(name, (b.view.inFlight.get(name) ?? 0) + 1);
    b.view.lastSentAt.set(name, nowMs);
    noteAdapterUse(b.view.uses, name, performance.now());
    b.holder.set(name, tenant);
    if (b.view.loaded.has(name)) b.view.loaded.touch(name);
  }

  noteDone(e: EngineRecord, name: string): void {
    const b = this.booksOf(e);
    const k = (b.view.inFlight.get(name) ?? 1) - 1;
    if (k > 0) b.view.inFlight.set(name, k);
    else {
      b.view.inFlight.delete(name);
      b.view.lastSentAt.delete(name);
      wake(b);
    }
  }

  /** adapters loaded per engine URL, as the books say */
  *loadedPerEngine(): Iterable<[string, number]> {
    for (const [url, b] of this.books) yield [url, b.view.loaded.size];
  }

  /** what the router's books say `e` holds; null before the router has kept any for it */
  residency(e: EngineRecord): LoraResidencyRow | null {
    const b = this.books.get(e.url);
    if (!b) return null;
    const loaded = [...b.view.loaded.oldestFirst()].map((x) => x.key);
    const now = performance.now();
    const failures = [...b.failed]
      .filter(([, f]) => f.until > now)
      .slice(0, RESIDENCY_NAMES)
      .map(([adapter, f]) => ({
        adapter,
        id: f.id,
        error: f.error,
        attempts: f.attempts,
        retryInMs: Math.round(f.until - now),
      }));
    return {
      maxLoras: b.view.maxLoras,
      maxCpuLoras: b.view.maxCpuLoras,
      loaded: loaded.slice(-RESIDENCY_NAMES),
      loadedCount: loaded.length,
      loading: [...b.view.loading].slice(0, RESIDENCY_NAMES),
      running: [...b.view.running].slice(0, RESIDENCY_NAMES),
      waiting: [...b.view.waiting].slice(0, RESIDENCY_NAMES),
      failures,
    };
  }

  /** whether `name` is usable on `e` now: in the router's books (its /v1/models and its own loads) */
  isLoaded(e: EngineRecord, name: string): boolean {
    return this.booksOf(e).view.loaded.has(name);
  }

  /**
   * Makes `name` usable on `e`: at once when the engine lists it; else the one load in flight for it
   * there, or a new one (after unloading what would push the engine over max_cpu_loras).
   */
  ensure(
    e: EngineRecord,
    name: string,
    who?: LoadRequester,
    deadline = performance.now() + LOAD_TIMEOUT_MS,
  ): Promise<void> {
    if (this.isLoaded(e, name)) return Promise.resolve();
    const a = this.registry.get(name);
    if (!a) return Promise.reject(new HttpError(404, `The model \`${name}\` does not exist.`, "model"));
    const b = this.booksOf(e);
    const pending = b.pending.get(name);
    if (pending) return pending;
    const failed = b.failed.get(name);
    const now = performance.now();
    if (failed && failed.until > now) return Promise.reject(loadFailedError(name, failed, now));
    // no room without pushing out an adapter that is loading or has requests in flight: the engine would
    // either hold more adapters than its host cache (reading them from disk again in every batch that
    // needs one, a stall for every stream there that nobody is charged for) or drop one that requests
    // were just sent for (vLLM answers those 404); the request waits for a request there to end or a
    // load to settle, and is refused (503, Retry-After) past the load timeout
    if (b.view.loaded.size + b.pending.size + 1 > b.view.maxCpuLoras && !this.hasIdle(b)) {
      if (now > deadline) return Promise.reject(slotsBusyError(name));
      return new Promise<void>((woken) => {
        const wake = () => {
          clearTimeout(guard);
          woken();
        };
        // a hang guard (nothing wakes it when the engine goes): it takes its entry out of the list
        const guard = setTimeout(
          () => {
            const i = b.waiters.indexOf(wake);
            if (i >= 0) b.waiters.splice(i, 1);
            woken();
          },
          Math.min(1000, Math.max(1, deadline - now)),
        );
        guard.unref();
        b.waiters.push(wake);
      }).then(() => this.ensure(e, name, who, deadline));
    }
    try {
      // a load pushes out another adapter: not one other tenants use while this one holds its share
      if (who && this.overShare(b, who, now)) return Promise.reject(slotsHeldError(name));
      // charged before it starts, to the tenant whose request causes it
      who?.charge?.();
    } catch (err) {
      return Promise.reject(err as Error);
    }
    const tenant = who?.tenant ?? "";
    this.stats.loadsByTenant.set(tenant, (this.stats.loadsByTenant.get(tenant) ?? 0) + 1);
    b.holder.set(name, tenant);
    const p = this.load(e, b, a).finally(() => {
      b.pending.delete(name);
      b.view.loading.delete(name);
      wake(b);
    });
    b.pending.set(name, p);
    b.view.loading.add(name);
    return p;
  }

  /** whether an adapter loaded there has no request in flight and no load pending */
  private hasIdle(b: EngineBooks): boolean {
    for (const x of b.view.loaded.oldestFirst())
      if (!b.pending.has(x.key) && (b.view.inFlight.get(x.key) ?? 0) === 0) return true;
    return false;
  }

  /**
   * Whether a load for `who` on that engine would push out an adapter another tenant uses while `who`
   * already holds its weighted share of the engine's slots (max_cpu_loras): its share is the slots
   * times its weight over the weights of the tenants holding adapters there (itself among them). A
   * tenant under its share, or one with an adapter of its own or an idle one to push out, may load.
   */
  private overShare(b: EngineBooks, who: LoadRequester, now: number): boolean {
    const slots = b.view.maxCpuLoras;
    if (b.view.loaded.size + b.pending.size + 1 <= slots) return false; // nothing pushed out
    const held = new Map<string, number>();
    for (const x of b.view.loaded.oldestFirst()) {
      const h = b.holder.get(x.key) ?? "";
      held.set(h, (held.get(h) ?? 0) + 1);
    }
    if (held.size === 0 || (held.size === 1 && held.has(who.tenant))) return false;
    let weights = who.weight;
    for (const t of held.keys()) if (t !== who.tenant) weights += who.weightOf?.(t) ?? 1;
    const share = (slots * who.weight) / weights;
    if ((held.get(who.tenant) ?? 0) < share) return false;
    // at its share: only its own adapters, or idle ones, may go
    return this.victim(b, who.tenant, now) === null;
  }

  private async load(e: EngineRecord, b: EngineBooks, a: AdapterEntry): Promise<void> {
    // room first, so that the engine never holds more than max_cpu_loras of the router's adapters
    // this load counted once: it joins `pending` when load() first awaits
    const others = () => b.pending.size - (b.pending.has(a.name) ? 1 : 0);
    const tenant = b.holder.get(a.name) ?? "";
    while (b.view.loaded.size + others() + 1 > b.view.maxCpuLoras) {
      const victim = this.victim(b, tenant, performance.now()) ?? this.victim(b);
      if (victim === null) break;
      b.view.loaded.delete(victim);
      b.view.uses.delete(victim);
      b.holder.delete(victim);
      b.changedAt.set(victim, performance.now());
      e.view.models.delete(victim);
      this.stats.unloads++;
      await this.post(e, "/v1/unload_lora_adapter", { lora_name: victim }).catch(() => undefined);
    }
    const t0 = performance.now();
    try {
      await this.post(e, "/v1/load_lora_adapter", { lora_name: a.name, lora_path: a.path });
    } catch (err) {
      // loaded there already (before the router's books heard of it): it is usable
      if (/has already been loaded/.test((err as Error).message)) {
        b.view.loaded.set(a.name, true);
        e.view.models.add(a.name);
        return;
      }
      this.stats.loadFailures++;
      const why = (err as Error).message;
      const prev = b.failed.get(a.name);
      const attempts = (prev?.attempts ?? 0) + 1;
      const backoff = Math.min(LOAD_FAILURE_BACKOFF_MAX_MS, LOAD_FAILURE_BACKOFF_MS * 2 ** (attempts - 1));
      const failure: LoadFailure = {
        id: `lora-${randomBytes(6).toString("hex")}`,
        until: performance.now() + backoff,
        attempts,
        error: why.slice(0, 500),
      };
      b.failed.set(a.name, failure);
      // the details for the operator only: the client's error names the adapter and the id
      log.warn(
        { adapter: a.name, path: a.path, engine: e.url, id: failure.id, attempts, backoffMs: backoff },
        `loading the LoRA adapter failed: ${failure.error}`,
      );
      throw loadFailedError(a.name, failure, performance.now());
    }
    b.failed.delete(a.name);
    this.stats.loads++;
    const took = (performance.now() - t0) / 1000;
    this.stats.loadSecondsTotal += took;
    learnLoadRate(b.view, a.bytes, took);
    b.view.loaded.set(a.name, true);
    b.changedAt.set(a.name, performance.now());
    e.view.models.add(a.name);
  }

  /**
   * the least used adapter loaded there with nothing in flight, else the oldest (src/routing/lora.ts);
   * for `tenant`: only its own adapters or ones nobody else has used in ADAPTER_IN_USE_MS
   */
  private victim(b: EngineBooks, tenant?: string, now = performance.now()): string | null {
    if (tenant === undefined) return evictionVictim(b.view, now, (name) => b.pending.has(name));
    return evictionVictim(b.view, now, (name) => {
      if (b.pending.has(name)) return true;
      const h = b.holder.get(name) ?? "";
      if (h === tenant) return false;
      const at = b.view.uses.get(name)?.at;
      return (b.view.inFlight.get(name) ?? 0) > 0 || (at !== undefined && now - at < ADAPTER_IN_USE_MS);
    });
  }

  /** a POST to the engine's own API: 200 or an error carrying the engine's answer */
  private async post(e: EngineRecord, path: string, body: unknown): Promise<void> {
    const res = await e.pool.request({
      path,
      method: "POST",
      headers: { "content-type": "application/json", ...probeHeaders(e.spec, this.cfg()) },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(LOAD_TIMEOUT_MS),
    });
    if (res.statusCode === 200) {
      discard(res.body);
      return;
    }
    let text = "";
    for await (const chunk of res.body) {
      if (text.length < 2000) text += String(chunk);
    }
    let message = text.slice(0, 500);
    try {
      const doc = JSON.parse(text) as { error?: { message?: string }; detail?: string; message?: string };
      message = doc.error?.message ?? doc.detail ?? doc.message ?? message;
    } catch {
      // plain text
    }
    const hint =
      res.statusCode === 404 && /not found/i.test(message)
        ? " (is VLLM_ALLOW_RUNTIME_LORA_UPDATING=True set on the engine?)"
        : "";
    throw new PeerError(`${path} answered ${res.statusCode}: ${message}${hint}`);
  }
}

/**
 * A failed load's answer to its clients: which adapter, that it could not be loaded, and an id to quote
 * (the log and /engines hold the path, the Hub id, the engine and its answer under the same id).
 */
function loadFailedError(name: string, f: LoadFailure, now: number): HttpError {
  const secs = Math.max(1, Math.ceil((f.until - now) / 1000));
  return new HttpError(
    502,
    `The LoRA adapter \`${name}\` could not be loaded (error id ${f.id}); retry in ${secs} s, or quote the id to the operator.`,
    "model",
    { "retry-after": String(secs) },
  );
}

/** A tenant at its share of an engine's adapter slots, whose load would push out another tenant's. */
/** wakes the requests waiting for room on an engine (they look again) */
function wake(b: EngineBooks): void {
  if (b.waiters.length === 0) return;
  for (const w of b.waiters.splice(0)) w();
}

function slotsBusyError(name: string): HttpError {
  return new HttpError(
    503,
    `The LoRA adapter \`${name}\` cannot be loaded now: every adapter slot of the engine is in use; retry shortly.`,
    "model",
    { "retry-after": "1" },
  );
}

function slotsHeldError(name: string): HttpError {
  return new HttpError(
    503,
    `The LoRA adapter \`${name}\` cannot be loaded now: this tenant holds its share of the engine's adapter slots and the others are in use; retry shortly.`,
    "model",
    { "retry-after": "1" },
  );
}
