// One router's rooms, wired: the registry and its health, metrics, tracing, tenancy and its gate,
// admission, cache-aware routing, the policy, the prompt budget, the data plane, ingress and engine
// drains, each handed what it needs of the others. Built once per router process; the HTTP edge
// (edge/server.ts) serves with it, and a reload applies a new config to it (`reconfigure`).
import type { IncomingMessage } from "node:http";
import { createPolicy, policyOptions, type Policy, type PolicyName } from "../routing/index.js";
import { AdmissionQueue, RetryBudget, type QueueLimits } from "./request/admission.js";
import { engineSpecs, policySettingsOf, type RouterConfig } from "./config/config.js";
import { StaticDiscovery } from "../discovery/static.js";
import { discoverySources } from "../discovery/index.js";
import { Tracer } from "../obs/tracing.js";
import { logger } from "../obs/log.js";
import { RouterMetrics } from "./telemetry/metrics.js";
import { watchAdapterTraffic } from "./telemetry/lora-metrics.js";
import { AccessLog } from "./telemetry/access-log.js";
import { AttemptLoop } from "./dataplane/attempt-loop.js";
import { IssuedIds } from "./dataplane/issued-ids.js";
import { ResponseAffinity } from "./dataplane/response-affinity.js";
import { Disaggregation } from "./pd/disagg.js";
import { EngineRegistry } from "./engines/engine-registry.js";
import { AdapterLoader, AdapterCatalog } from "./engines/adapters.js";
import { CacheRouting } from "./kv/cache-routing.js";
import { EngineDrains } from "./migration/drain.js";
import { AutoscaleLoop } from "./autoscale/loop.js";
import { TenancyState } from "../tenancy/state.js";
import { RouterGate } from "../tenancy/router-gate.js";
import { Ingress } from "./edge/ingress.js";
import { PromptBudget } from "./edge/prompt-budget.js";
import type { RouterGroup, RouterRooms } from "./edge/rooms.js";
import { LiveState } from "./live-state.js";

const log = logger("router");

/**
 * Admission-queue bounds: the tenancy block's queue when the config has one (whether or not keys are
 * loaded yet: a keys directory can turn tenancy on without a reload), else the admission block.
 */
function queueLimits(cfg: RouterConfig): QueueLimits {
  const t = cfg.tenancy?.queue;
  if (t) return { queueSize: t.size, queueTimeout: t.timeout, perFlow: t.perTenant };
  return { queueSize: cfg.admission.queueSize, queueTimeout: cfg.admission.queueTimeout };
}

export class RouterAssembly implements RouterRooms {
  readonly registry: EngineRegistry;
  readonly metrics: RouterMetrics;
  readonly queue: AdmissionQueue;
  readonly budget: RetryBudget;
  readonly discovery: StaticDiscovery;
  /** the config and policy in force, as the rooms read them while requests run */
  private readonly live: LiveState;
  /** cache-aware routing state (prefix index, KV-event index and subscriptions, watchdog) */
  readonly cache: CacheRouting;
  readonly attemptLoop: AttemptLoop;
  readonly accessLog: AccessLog;
  /** OTLP span exporter; undefined when tracing is off */
  readonly tracer: Tracer | undefined;
  /** API keys, tenant limits, cache salts (src/tenancy); off until a key is configured */
  readonly tenancy: TenancyState;
  /** the tenancy gate every way in goes through: HTTP ingress and the endpoint picker (epp-glue.ts) */
  readonly gate: RouterGate;
  /** the edge: HTTP request → routed request or rejection */
  readonly ingress: Ingress;
  /** long prompts counted off the loop at the edge; tokenizers loaded at discovery */
  private readonly prompts: PromptBudget;
  /** engines draining: the deadline after which their requests in flight move elsewhere */
  readonly drains: EngineDrains;
  /** which engine made each stored response (dataplane/response-affinity.ts); a router group shares it */
  readonly affinity: ResponseAffinity;
  /** the token-in requests in flight by tenant, so an abort stops only the caller's own */
  readonly issued = new IssuedIds();
  /** set in a router worker: the process group it serves with */
  get group(): RouterGroup | undefined {
    return this.live.group;
  }

  set group(group: RouterGroup | undefined) {
    this.live.group = group;
  }
  /** the SLO autoscaling decision on a timer (autoscale/loop.ts); idle unless `autoscaling.enabled` */
  readonly autoscale: AutoscaleLoop;

  constructor(private cfg: RouterConfig) {
    this.registry = new EngineRegistry(cfg, {
      onEject: (url, reason) => {
        this.metrics.ejections.inc({ engine: url, reason });
        this.drains.ejected(url);
      },
      onEjectWithheld: (url, reason) => this.metrics.ejectionsWithheld.inc({ engine: url, reason }),
      onProbeExcused: (url, why) => this.metrics.probeTimeoutsExcused.inc({ engine: url, why }),
      onPanic: (model) => this.metrics.panics.inc({ model }),
    });
    this.tenancy = new TenancyState(cfg.tenancy ?? {});
    this.queue = new AdmissionQueue(queueLimits(cfg));
    this.budget = new RetryBudget(cfg.retry);
    this.tracer = cfg.tracing.otlpEndpoint
      ? new Tracer({
          endpoint: cfg.tracing.otlpEndpoint,
          serviceName: cfg.tracing.serviceName,
          sampleRatio: cfg.tracing.sampleRatio,
          trustClientSampling: cfg.tracing.trustClientSampling,
        })
      : undefined;
    this.metrics = new RouterMetrics({
      tracing: () => this.tracer,
      forEachEngine: (fn) => {
        for (const e of this.registry.engines.values()) {
          if (e.draining) continue;
          fn(e.url, {
            healthy: e.healthy,
            // a worker reports its own (the group's /metrics adds them up)
            inFlight: this.group ? this.group.ownInFlight(e) : e.view.inFlight,
            running: e.view.running,
            waiting: e.view.waiting,
            kv: e.view.kvUsage,
          });
        }
      },
      queueDepth: () => this.queue.depth,
      responseIds: () => ({ size: this.affinity.size, evictions: this.affinity.evictions }),
      sessions: () => this.ingress.sessions,
      tenancyKeys: () => ({
        keys: this.tenancy.keyCount,
        stale: this.tenancy.keysError !== undefined,
        refused: this.tenancy.keyReloads,
      }),
    });
    this.affinity = new ResponseAffinity(cfg.responses.maxIds);
    this.cache = new CacheRouting(this.registry, cfg, this.metrics.registry);
    this.gate = new RouterGate(this.tenancy, this.metrics.tenantBooks, {
      contextOf: (model) => this.registry.maxModelLen(model),
    });
    this.queue.onWaited = this.metrics.tenantWaited;
    this.live = new LiveState(cfg, undefined, this.gate, this.cache);
    const policy = this.makePolicy(cfg);
    this.live.set(cfg, policy);
    this.queue.recheckMs = policy.recheckMs ?? 0;
    if (cfg.lora && (cfg.lora.dir || cfg.lora.adapters.length > 0)) {
      const adapters = new AdapterLoader(
        new AdapterCatalog(cfg.lora.dir, cfg.lora.adapters),
        this.live.config,
        cfg.lora.maxCpuLoras,
      );
      this.registry.adapters = adapters;
      this.metrics.watchAdapters(adapters.stats);
      watchAdapterTraffic(this.metrics.registry, adapters);
    }
    this.registry.on("capacity", () => this.queue.kick());
    this.prompts = new PromptBudget(this.registry, this.live.config);
    // before the engine can enter rotation with these models: no request waits for a tokenizer load
    this.registry.on("models", (e) => this.prompts.warm(e.modelCards));
    this.accessLog = new AccessLog(this.live.config, this.metrics.accessLineSkipped);
    this.attemptLoop = new AttemptLoop({
      accessLog: this.accessLog,
      tracer: this.tracer,
      registry: this.registry,
      metrics: this.metrics,
      queue: this.queue,
      budget: this.budget,
      config: this.live.config,
      policy: this.live.policy,
      disagg: new Disaggregation({
        registry: this.registry,
        config: this.live.config,
        budget: this.budget,
        metrics: this.metrics.registry,
        mayDebug: this.live.mayDebug,
      }),
      hashing: this.cache,
      loraCache: this.cache,
      affinity: this.affinity,
      issued: this.issued,
      routes: this.live,
    });
    this.ingress = new Ingress({
      config: this.live.config,
      registry: this.registry,
      gate: this.gate,
      metrics: this.metrics,
      budget: this.prompts,
      deadlines: this.attemptLoop.deadlines,
      policyName: this.live.policyName,
      accessLog: this.accessLog,
      affinity: this.affinity,
      issued: this.issued,
      dataPlane: this.attemptLoop,
    });
    this.drains = new EngineDrains({
      registry: this.registry,
      config: this.live.config,
      attemptsOn: (e) => this.attemptLoop.attemptsOn(e),
    });
    this.discovery = new StaticDiscovery(engineSpecs(cfg));
    this.autoscale = new AutoscaleLoop({
      registry: this.registry,
      config: this.live.config,
      answeredByModel: () => {
        const by = new Map<string, number>();
        for (const v of this.metrics.requests.get().values) {
          const model = String(v.labels.model);
          by.set(model, (by.get(model) ?? 0) + v.value);
        }
        return by;
      },
      metrics: this.metrics.registry,
    });
  }

  get config(): RouterConfig {
    return this.cfg;
  }

  /** The policy new requests are routed with (the endpoint picker decides with it too). */
  get policy(): Policy {
    return this.live.policy();
  }

  /**
   * `x-switchyard-debug: 1` from a client debug.allowHeader lets have the explanation (RouterGate.mayDebug);
   * anyone else's changes nothing in the answer.
   */
  mayDebug(req: IncomingMessage): boolean {
    return this.live.mayDebug(req);
  }

  private makePolicy(cfg: RouterConfig): Policy {
    return createPolicy(
      cfg.policy as PolicyName,
      policyOptions(policySettingsOf(cfg), { cache: this.cache }),
    );
  }

  async start(): Promise<void> {
    // a router worker's engines come from its primary (src/router/cluster)
    if (this.registry.leader) return this.cache.start();
    await this.registry.addSource(this.discovery);
    // Kubernetes / file discovery (not hot-reloaded: a mode change needs a restart)
    for (const src of discoverySources(this.cfg.discovery)) await this.registry.addSource(src);
    this.registry.startLoops();
    await this.cache.start();
    this.autoscale.apply();
  }

  /** Applies a new configuration to new requests; in-flight ones finish under the old one. */
  reconfigure(cfg: RouterConfig): void {
    // first: reading a new keys directory may fail, and a failed reload must change nothing
    this.tenancy.apply(cfg.tenancy ?? {});
    this.cfg = cfg;
    this.cache.setConfig(cfg);
    this.prompts.reset();
    const policy = this.makePolicy(cfg);
    this.live.set(cfg, policy);
    this.queue.recheckMs = policy.recheckMs ?? 0;
    this.queue.setLimits(queueLimits(cfg));
    this.budget.setOptions(cfg.retry);
    this.affinity.setCap(cfg.responses.maxIds);
    this.registry.setConfig(cfg);
    this.discovery.update(engineSpecs(cfg));
    if (!this.registry.leader) this.autoscale.apply();
    log.info({ backends: cfg.backends.length, policy: cfg.policy }, "configuration applied");
  }

  /** After the HTTP server closed: what is still queued is dropped, then every room stops. */
  async close(): Promise<void> {
    this.queue.clear();
    this.drains.close();
    this.autoscale.close();
    this.accessLog.close();
    await this.cache.close();
    await this.registry.close();
    await this.tracer?.shutdown();
  }
}
