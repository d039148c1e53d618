// Kubernetes discovery: engine pods found by namespace + label selector through the API server's
// plain list/watch HTTP protocol (no client library: a list, then a chunked watch stream of
// newline-delimited JSON events). The engine set is rebuilt from a fresh list on every watch
// (re)connect and every `resyncInterval`, so an event missed while the watch was down (a DELETE,
// a pod turning unready) is caught by the next list: no ghost and no missed engines.
//
// A pod is an engine when it is Ready, has a pod IP and no deletionTimestamp; its URL is
// http://<podIP>:<switchyard.dev/port annotation | container port "http" | defaultPort>.
import { readFileSync } from "node:fs";
import { Agent, request, type Dispatcher } from "undici";
import type { DiscoverySink, DiscoverySource, EngineSpec } from "./types.js";
import { logger } from "../obs/log.js";
import { VLLM_PORT } from "../config/vllm-defaults.js";
import { InvalidConfigError, PeerError, WireFormatError } from "../errors/index.js";

const log = logger("discovery.kubernetes");

export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** The keys the Helm chart puts on engine pods (docs/kubernetes.md, "Engine discovery"). */
export const LABEL_MODEL = "switchyard.dev/model";
export const LABEL_ROLE = "switchyard.dev/role";
export const ANNOTATION_PORT = "switchyard.dev/port";
export const ANNOTATION_KV_EVENTS_PORT = "switchyard.dev/kv-events-port";
export const ANNOTATION_SERVED_MODEL = "switchyard.dev/served-model-name";

/** Pods tracked at most; beyond it new pods are ignored (and logged) until some go away. */
const MAX_PODS = 10_000;
/** Longest watch line (one pod object) accepted; a longer one is a broken stream: re-list. */
const MAX_LINE_BYTES = 16 * 2 ** 20;
const LIST_PAGE = 500;

export interface KubernetesDiscoveryOptions {
  /** API server base URL, e.g. https://10.0.0.1:443 */
  apiUrl: string;
  namespace: string;
  /** label selector, e.g. `switchyard.dev/engine=true,app.kubernetes.io/instance=prod` */
  selector: string;
  /** bearer token file, re-read on every request (projected tokens rotate) */
  tokenFile?: string | undefined;
  /** CA bundle for an https API server */
  caFile?: string | undefined;
  /** full re-list this often even while the watch is healthy (ms) */
  resyncInterval?: number;
  /** server-side watch timeout (s); the watch then ends and is re-established after a re-list */
  watchTimeoutSeconds?: number;
  /** engine port when a pod names none */
  defaultPort?: number;
  /** backoff bounds after a failed list/watch (ms) */
  minBackoff?: number;
  maxBackoff?: number;
}

/** Options for running inside a pod: service-account token and CA, KUBERNETES_SERVICE_HOST/PORT. */
export function inClusterOptions(
  env: NodeJS.ProcessEnv = process.env,
): Pick<KubernetesDiscoveryOptions, "apiUrl" | "tokenFile" | "caFile"> & { namespace?: string } {
  const host = env.KUBERNETES_SERVICE_HOST;
  const port = env.KUBERNETES_SERVICE_PORT ?? "443";
  if (!host) {
    throw new InvalidConfigError(
      "not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST unset): pass --k8s-api-url and --k8s-token-file",
    );
  }
  let namespace: string | undefined;
  try {
    namespace = readFileSync(`${SERVICE_ACCOUNT_DIR}/namespace`, "utf8").trim() || undefined;
  } catch {
    namespace = undefined;
  }
  return {
    apiUrl: `https://${host.includes(":") ? `[${host}]` : host}:${port}`,
    tokenFile: `${SERVICE_ACCOUNT_DIR}/token`,
    caFile: `${SERVICE_ACCOUNT_DIR}/ca.crt`,
    namespace,
  };
}

/** The parts of a v1 Pod this source reads. */
export interface Pod {
  metadata?: {
    name?: string;
    namespace?: string;
    uid?: string;
    resourceVersion?: string;
    deletionTimestamp?: string | null;
    labels?: Record<string, string>;
    annotations?: Record<string, string>;
  };
  spec?: { containers?: { ports?: { name?: string; containerPort?: number }[] }[] };
  status?: { phase?: string; podIP?: string; conditions?: { type?: string; status?: string }[] };
}

interface PodList {
  metadata?: { resourceVersion?: string; continue?: string };
  items?: Pod[];
}

interface WatchEvent {
  type?: string;
  object?: Pod & { code?: number; reason?: string; message?: string; kind?: string };
}

/** Watch expired (410 Gone) or was told to start over. */
class Expired extends PeerError {}

function podKey(p: Pod): string {
  return p.metadata?.uid ?? `${p.metadata?.namespace ?? ""}/${p.metadata?.name ?? ""}`;
}

function isReady(p: Pod): boolean {
  return (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function validPort(v: unknown): number | undefined {
  const n = typeof v === "number" ? v : typeof v === "string" && v.trim() !== "" ? Number(v) : NaN;
  return Number.isInteger(n) && n > 0 && n < 65536 ? n : undefined;
}

/** The engine a pod stands for, or undefined when it must not take traffic now. */
export function engineOfPod(p: Pod, defaultPort = VLLM_PORT): EngineSpec | undefined {
  const meta = p.metadata ?? {};
  const ip = p.status?.podIP;
  if (!ip || meta.deletionTimestamp || !isReady(p)) return undefined;
  const ann = meta.annotations ?? {};
  const labels = meta.labels ?? {};
  let port = validPort(ann[ANNOTATION_PORT]);
  if (port === undefined) {
    for (const c of p.spec?.containers ?? []) {
      const named = c.ports?.find((x) => x.name === "http");
      if (named) {
        port = validPort(named.containerPort);
        break;
      }
    }
  }
  const host = ip.includes(":") ? `[${ip}]` : ip;
  const spec: EngineSpec = { url: `http://${host}:${port ?? defaultPort}`, weight: 1 };
  const kvPort = validPort(ann[ANNOTATION_KV_EVENTS_PORT]);
  if (kvPort !== undefined) spec.kvEvents = { endpoint: `tcp://${host}:${kvPort}` };
  if (labels[LABEL_MODEL]) spec.model = labels[LABEL_MODEL];
  if (ann[ANNOTATION_SERVED_MODEL]) spec.servedModelName = ann[ANNOTATION_SERVED_MODEL];
  if (labels[LABEL_ROLE]) spec.role = labels[LABEL_ROLE];
  if (meta.name) spec.source = `pod ${meta.namespace ?? ""}/${meta.name}`;
  return spec;
}

function sameSpec(a: EngineSpec, b: EngineSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export class KubernetesDiscovery implements DiscoverySource {
  readonly name = "kubernetes";
  private sink: DiscoverySink | undefined;
  private readonly pods = new Map<string, Pod>();
  /** url → spec of what the sink was last told */
  private applied = new Map<string, EngineSpec>();
  private readonly dispatcher: Dispatcher | undefined;
  private watchAbort: AbortController | undefined;
  private resyncTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  private wake: (() => void) | undefined;
  /** counters for /engines and tests */
  readonly stats = { lists: 0, watches: 0, events: 0, expired: 0, errors: 0 };
  private readonly opts: Required<Omit<KubernetesDiscoveryOptions, "tokenFile" | "caFile">> &
    Pick<KubernetesDiscoveryOptions, "tokenFile" | "caFile">;
  private synced: Promise<void>;
  private markSynced!: () => void;

  constructor(opts: KubernetesDiscoveryOptions) {
    this.opts = {
      resyncInterval: 300_000,
      watchTimeoutSeconds: 290,
      defaultPort: VLLM_PORT,
      minBackoff: 250,
      maxBackoff: 10_000,
      ...opts,
      apiUrl: opts.apiUrl.replace(/\/+$/, ""),
    };
    if (opts.caFile) this.dispatcher = new Agent({ connect: { ca: readFileSync(opts.caFile) } });
    this.synced = new Promise((r) => (this.markSynced = r));
  }

  start(sink: DiscoverySink): void {
    this.sink = sink;
    this.stopped = false;
    this.running = this.loop();
    this.resyncTimer = setInterval(() => this.watchAbort?.abort(), this.opts.resyncInterval);
    this.resyncTimer.unref();
  }

  /** Resolves after the first successful list has been applied. */
  whenSynced(): Promise<void> {
    return this.synced;
  }

  /** The engines the sink currently holds from this source. */
  engines(): EngineSpec[] {
    return [...this.applied.values()];
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.resyncTimer);
    this.watchAbort?.abort();
    this.wake?.();
    await this.running?.catch(() => undefined);
    await this.dispatcher?.close().catch(() => undefined);
    this.sink = undefined;
  }

  private headers(): Record<string, string> {
    const h: Record<string, string> = { accept: "application/json" };
    if (this.opts.tokenFile) {
      try {
        h.authorization = `Bearer ${readFileSync(this.opts.tokenFile, "utf8").trim()}`;
      } catch (err) {
        log.warn({ err: (err as Error).message }, "cannot read the service-account token");
      }
    }
    return h;
  }

  private podsPath(query: Record<string, string>): string {
    const q = new URLSearchParams({ labelSelector: this.opts.selector, ...query });
    return `${this.opts.apiUrl}/api/v1/namespaces/${encodeURIComponent(this.opts.namespace)}/pods?${q}`;
  }

  private async loop(): Promise<void> {
    let backoff = this.opts.minBackoff;
    while (!this.stopped) {
      try {
        const rv = await this.list();
        const t0 = Date.now();
        await this.watch(rv);
        // a watch that ends at once every time must not turn into a list storm
        if (Date.now() - t0 < 1000 && !this.stopped) {
          await this.sleep(backoff);
          backoff = Math.min(this.opts.maxBackoff, backoff * 2);
        } else backoff = this.opts.minBackoff;
      } catch (err) {
        if (this.stopped) break;
        if (err instanceof Expired) {
          this.stats.expired++;
          log.info({ reason: err.message }, "watch expired; re-listing");
          continue;
        }
        this.stats.errors++;
        log.warn({ err: (err as Error).message, retryInMs: backoff }, "pod list/watch failed");
        await this.sleep(backoff);
        backoff = Math.min(this.opts.maxBackoff, backoff * 2);
      }
    }
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.wake = () => {
        clearTimeout(t);
        resolve();
      };
    });
    this.wake = undefined;
  }

  /** Lists every matching pod (paged) and makes the sink's engine set equal to it. */
  private async list(): Promise<string> {
    const fresh = new Map<string, Pod>();
    let cont: string | undefined;
    let rv = "";
    do {
      const q: Record<string, string> = { limit: String(LIST_PAGE) };
      if (cont) q.continue = cont;
      const res = await request(this.podsPath(q), {
        method: "GET",
        headers: this.headers(),
        dispatcher: this.dispatcher,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
      const text = await res.body.text();
      if (res.statusCode === 410) throw new Expired("continue token expired");
      if (res.statusCode !== 200)
        throw new PeerError(`pod list answered ${res.statusCode}: ${text.slice(0, 300)}`);
      const doc = JSON.parse(text) as PodList;
      for (const p of doc.items ?? []) if (fresh.size < MAX_PODS) fresh.set(podKey(p), p);
      cont = doc.metadata?.continue || undefined;
      rv = doc.metadata?.resourceVersion ?? rv;
    } while (cont);
    this.stats.lists++;
    this.pods.clear();
    for (const [k, p] of fresh) this.pods.set(k, p);
    this.reconcile();
    this.markSynced();
    return rv;
  }

  private async watch(resourceVersion: string): Promise<void> {
    const ac = new AbortController();
    this.watchAbort = ac;
    let rv = resourceVersion;
    try {
      const q: Record<string, string> = {
        watch: "true",
        allowWatchBookmarks: "true",
        timeoutSeconds: String(this.opts.watchTimeoutSeconds),
      };
      if (rv) q.resourceVersion = rv;
      const res = await request(this.podsPath(q), {
        method: "GET",
        headers: this.headers(),
        dispatcher: this.dispatcher,
        signal: ac.signal,
        headersTimeout: 30_000,
        // bookmarks arrive about once a minute; silence well past the server's own timeout is a dead link
        bodyTimeout: (this.opts.watchTimeoutSeconds + 60) * 1000,
      });
      if (res.statusCode === 410) {
        await res.body.dump();
        throw new Expired("410 Gone on watch");
      }
      if (res.statusCode !== 200) {
        const text = await res.body.text();
        throw new PeerError(`pod watch answered ${res.statusCode}: ${text.slice(0, 300)}`);
      }
      this.stats.watches++;
      let buf = "";
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        buf += chunk.toString("utf8");
        let nl: number;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (line) rv = this.onEvent(JSON.parse(line) as WatchEvent, rv);
        }
        if (buf.length > MAX_LINE_BYTES) throw new WireFormatError("watch event larger than the line limit");
      }
      // the server ended the watch (timeoutSeconds) or the connection dropped: the loop re-lists
    } catch (err) {
      if (ac.signal.aborted && !this.stopped) return; // periodic resync: the loop re-lists
      throw err;
    } finally {
      if (this.watchAbort === ac) this.watchAbort = undefined;
    }
  }

  private onEvent(ev: WatchEvent, rv: string): string {
    this.stats.events++;
    const obj = ev.object;
    switch (ev.type) {
      case "ADDED":
      case "MODIFIED":
        if (obj) {
          const key = podKey(obj);
          if (this.pods.has(key) || this.pods.size < MAX_PODS) this.pods.set(key, obj);
          else log.warn({ max: MAX_PODS }, "too many engine pods; ignoring new ones");
          this.reconcile();
        }
        break;
      case "DELETED":
        if (obj) {
          this.pods.delete(podKey(obj));
          this.reconcile();
        }
        break;
      case "BOOKMARK":
        break;
      case "ERROR":
        if (obj?.code === 410) throw new Expired(obj.message ?? "resourceVersion too old");
        throw new PeerError(`watch error event: ${obj?.code ?? "?"} ${obj?.message ?? ""}`);
      default:
        return rv;
    }
    return obj?.metadata?.resourceVersion ?? rv;
  }

  /** Tells the sink the difference between the routable pods and what it holds now. */
  private reconcile(): void {
    const sink = this.sink;
    if (!sink) return;
    const next = new Map<string, EngineSpec>();
    for (const p of this.pods.values()) {
      const spec = engineOfPod(p, this.opts.defaultPort);
      // two pods on one address (IP reuse right after a deletion): the first keeps it
      if (spec && !next.has(spec.url)) next.set(spec.url, spec);
    }
    for (const url of this.applied.keys()) {
      if (!next.has(url)) {
        log.info({ engine: url }, "engine pod gone or not ready");
        sink.remove(url);
      }
    }
    for (const [url, spec] of next) {
      const was = this.applied.get(url);
      if (!was || !sameSpec(was, spec)) {
        if (!was)
          log.info({ engine: url, pod: spec.source, model: spec.model, role: spec.role }, "engine pod ready");
        sink.upsert(spec);
      }
    }
    this.applied = next;
  }
}
