// LoRA adapters the router manages: a registry (`--lora-dir DIR`, each subfolder a PEFT adapter named
// by its folder; `--lora-adapter` or config `lora.adapters` for folders elsewhere and Hub repositories),
// what each engine holds (its /v1/models, its vllm:lora_requests_info, the router's own loads and
// requests), and the loads themselves through the engine's own API (POST /v1/load_lora_adapter, which
// vLLM serves with VLLM_ALLOW_RUNTIME_LORA_UPDATING): one load per adapter and engine at a time,
// requests for it waiting on that load; before a load the least used idle adapter there is unloaded
// when the engine would otherwise hold more than max_cpu_loras; a failed or stuck load is an error for
// the requests waiting on it, never a hang. Clients never name a path: only registry adapters are
// loaded.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { LruMap } from "../../collections/lru-map.js";
import { HttpError } from "../../http/errors.js";
import type { AdapterUse, EngineLoraView, LoraRequestView } from "../../routing/index.js";
import { evictionVictim, noteAdapterUse } from "../../routing/lora.js";
import type { RouterConfig } from "../config/config.js";
import type { Upstream } from "./upstream.js";
import { discard } from "./engine-get.js";
import { probeHeaders } from "./upstream-rules.js";
import type { EngineLora } from "./scrape.js";
import { CapacityError, InputFileError, PeerError } from "../../errors/index.js";

/** one registry entry: the adapter's name, its folder as the engines read it, its base and size */
export interface AdapterEntry {
  name: string;
  path: string;
  /** the base model (adapter_config.json's base_model_name_or_path, or the config's); null: any */
  base: string | null;
  bytes: number;
}

/** adapters in one registry at most */
export const MAX_ADAPTERS = 100_000;
/** a load that has not answered in this long fails the requests waiting on it */
export const LOAD_TIMEOUT_MS = 120_000;
/** adapter bytes assumed when the router cannot read the folder (the engines read it, not the router) */
const UNKNOWN_ADAPTER_BYTES = 50e6;
/** the engine's disk rate the router prices loads at; the load API's round trip beside it */
const ASSUMED_DISK_BPS = 1e9;
const ASSUMED_LINK_BPS = 25e9;
const LOAD_OVERHEAD_S = 0.05;

function weightBytes(dir: string): number {
  for (const f of ["adapter_model.safetensors", "adapter_model.bin"]) {
    try {
      const s = statSync(join(dir, f));
      if (s.isFile()) return s.size;
    } catch {
      // next
    }
  }
  return UNKNOWN_ADAPTER_BYTES;
}

function baseOf(dir: string): string | null {
  try {
    const cfg = JSON.parse(readFileSync(join(dir, "adapter_config.json"), "utf8")) as Record<string, unknown>;
    const b = cfg.base_model_name_or_path;
    return typeof b === "string" && b ? b : null;
  } catch {
    return null;
  }
}

/** The adapters the router may load: a scanned folder's subfolders, then the config's entries. */
export class AdapterRegistry {
  readonly adapters = new Map<string, AdapterEntry>();

  constructor(
    dir: string | undefined,
    entries: readonly { name: string; path?: string; hub?: string; base?: string; bytes?: number }[] = [],
  ) {
    if (dir) {
      const root = resolve(dir);
      let names: string[];
      try {
        names = readdirSync(root);
      } catch (err) {
        throw new InputFileError(`--lora-dir ${dir}: ${(err as Error).message}`);
      }
      for (const n of names.sort()) {
        const p = join(root, n);
        try {
          if (!statSync(join(p, "adapter_config.json")).isFile()) continue;
        } catch {
          continue; // not an adapter folder
        }
        this.add({ name: n, path: p, base: baseOf(p), bytes: weightBytes(p) });
      }
    }
    for (const e of entries) {
      if (e.hub !== undefined) {
        // the engines download it (vLLM resolves a load's path that is no folder as a Hub repository):
        // the router hands them the id, which is also the path vLLM 0.32 hashes into the blocks
        this.add({
          name: e.name,
          path: e.hub,
          base: e.base ?? null,
          bytes: e.bytes ?? UNKNOWN_ADAPTER_BYTES,
        });
        continue;
      }
      const path = e.path!;
      this.add({
        name: e.name,
        path,
        base: e.base ?? baseOf(path),
        bytes: e.bytes ?? weightBytes(path),
      });
    }
  }

  private add(e: AdapterEntry): void {
    if (this.adapters.size >= MAX_ADAPTERS) throw new CapacityError(`at most ${MAX_ADAPTERS} LoRA adapters`);
    this.adapters.set(e.name, e);
  }

  get(name: string): AdapterEntry | undefined {
    return this.adapters.get(name);
  }

  get size(): number {
    return this.adapters.size;
  }
}

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
}

/**
 * The residency row of an engine: the router's books where it manages adapters, else what the engine
 * reports in vllm:lora_requests_info (its statically loaded adapters are in its model list); null when
 * the engine serves no LoRA
 */
export function loraResidency(e: Upstream, loader: AdapterLoader | null): LoraResidencyRow | null {
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
  loadSeconds: number;
}

/**
 * The router's books of every engine's adapters and the loads it makes. The engine views it fills
 * (`EngineView.lora`) are what the routing policies read.
 */
export class AdapterLoader {
  readonly stats: AdapterStats = { loads: 0, loadFailures: 0, unloads: 0, loadSeconds: 0 };
  /** requests routed per registry adapter since the router started (at most the registry's size) */
  readonly requests = new Map<string, number>();
  private readonly books = new Map<string, EngineBooks>();

  constructor(
    readonly registry: AdapterRegistry,
    private readonly cfg: () => RouterConfig,
    /** the engines' max_cpu_loras when the config names it; else their scraped max_lora */
    private readonly maxCpuLoras: number | undefined,
  ) {}

  /** the request's view of a registry adapter (undefined: not one) */
  requestView(name: string): LoraRequestView | undefined {
    const a = this.registry.get(name);
    return a ? { name: a.name, path: a.path, base: a.base ?? "", bytes: a.bytes } : undefined;
  }

  private booksOf(e: Upstream): EngineBooks {
    let b = this.books.get(e.url);
    if (!b) {
      b = {
        view: {
          maxLoras: 1,
          maxCpuLoras: this.maxCpuLoras ?? 1,
          running: new Set(),
          waiting: new Set(),
          loaded: new LruMap(),
          loading: new Set(),
          inFlight: new Map(),
          lastSentAt: new Map(),
          uses: new Map(),
          diskBps: ASSUMED_DISK_BPS,
          linkBps: ASSUMED_LINK_BPS,
          loadOverheadS: LOAD_OVERHEAD_S,
        },
        pending: new Map(),
        changedAt: new Map(),
      };
      this.books.set(e.url, b);
      (e.view as { lora?: EngineLoraView }).lora = b.view;
    }
    return b;
  }

  /**
   * A scrape's vllm:lora_requests_info and the engine's /v1/models: registry adapters it lists are
   * loaded there (touched, not reordered), ones it no longer lists are not (unless a load is in flight)
   */
  applyScrape(e: Upstream, lora: EngineLora | undefined): void {
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
      }
    // the engine's list, corrected by the router's recent word, is what routing reads
    for (const [n] of b.changedAt) {
      if (b.view.loaded.has(n)) e.view.models.add(n);
      else e.view.models.delete(n);
    }
  }

  /** the router sent a request for `name` to `e` (its slot-wait and eviction books) */
  noteSent(e: Upstream, name: string, nowMs: number): void {
    // only registry adapters are sent here, so the counts hold at most the registry's names
    this.requests.set(name, (this.requests.get(name) ?? 0) + 1);
    const b = this.booksOf(e);
    b.view.inFlight.set(name, (b.view.inFlight.get(name) ?? 0) + 1);
    b.view.lastSentAt.set(name, nowMs);
    noteAdapterUse(b.view.uses, name, performance.now());
    if (b.view.loaded.has(name)) b.view.loaded.touch(name);
  }

  noteDone(e: Upstream, name: string): void {
    const b = this.booksOf(e);
    const k = (b.view.inFlight.get(name) ?? 1) - 1;
    if (k > 0) b.view.inFlight.set(name, k);
    else {
      b.view.inFlight.delete(name);
      b.view.lastSentAt.delete(name);
    }
  }

  /** adapters loaded per engine URL, as the books say */
  *loadedPerEngine(): Iterable<[string, number]> {
    for (const [url, b] of this.books) yield [url, b.view.loaded.size];
  }

  /** what the router's books say `e` holds; null before the router has kept any for it */
  residency(e: Upstream): LoraResidencyRow | null {
    const b = this.books.get(e.url);
    if (!b) return null;
    const loaded = [...b.view.loaded.oldestFirst()].map((x) => x.key);
    return {
      maxLoras: b.view.maxLoras,
      maxCpuLoras: b.view.maxCpuLoras,
      loaded: loaded.slice(-RESIDENCY_NAMES),
      loadedCount: loaded.length,
      loading: [...b.view.loading].slice(0, RESIDENCY_NAMES),
      running: [...b.view.running].slice(0, RESIDENCY_NAMES),
      waiting: [...b.view.waiting].slice(0, RESIDENCY_NAMES),
    };
  }

  /** whether `name` is usable on `e` now: in the router's books (its /v1/models and its own loads) */
  isLoaded(e: Upstream, name: string): boolean {
    return this.booksOf(e).view.loaded.has(name);
  }

  /**
   * Makes `name` usable on `e`: at once when the engine lists it; else the one load in flight for it
   * there, or a new one (after unloading what would push the engine over max_cpu_loras).
   */
  ensure(e: Upstream, name: string): Promise<void> {
    if (this.isLoaded(e, name)) return Promise.resolve();
    const a = this.registry.get(name);
    if (!a) return Promise.reject(new HttpError(404, `The model \`${name}\` does not exist.`, "model"));
    const b = this.booksOf(e);
    const pending = b.pending.get(name);
    if (pending) return pending;
    const p = this.load(e, b, a).finally(() => {
      b.pending.delete(name);
      b.view.loading.delete(name);
    });
    b.pending.set(name, p);
    b.view.loading.add(name);
    return p;
  }

  private async load(e: Upstream, b: EngineBooks, a: AdapterEntry): Promise<void> {
    // room first, so that the engine never holds more than max_cpu_loras of the router's adapters
    // this load counted once: it joins `pending` when load() first awaits
    const others = () => b.pending.size - (b.pending.has(a.name) ? 1 : 0);
    while (b.view.loaded.size + others() + 1 > b.view.maxCpuLoras) {
      const victim = this.victim(b);
      if (victim === null) break;
      b.view.loaded.delete(victim);
      b.view.uses.delete(victim);
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
      throw new HttpError(502, `loading the LoRA adapter '${a.name}' on ${e.url} failed: ${why}`, "model", {
        "retry-after": "1",
      });
    }
    this.stats.loads++;
    const took = (performance.now() - t0) / 1000;
    this.stats.loadSeconds += took;
    learnLoadRate(b.view, a.bytes, took);
    b.view.loaded.set(a.name, true);
    b.changedAt.set(a.name, performance.now());
    e.view.models.add(a.name);
  }

  /** the least used adapter loaded there with nothing in flight, else the oldest (src/routing/lora.ts) */
  private victim(b: EngineBooks): string | null {
    return evictionVictim(b.view, performance.now(), (name) => b.pending.has(name));
  }

  /** a POST to the engine's own API: 200 or an error carrying the engine's answer */
  private async post(e: Upstream, path: string, body: unknown): Promise<void> {
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
