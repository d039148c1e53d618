// The tenancy state the router consults per request. One immutable snapshot (keys, tenants, salts)
// is swapped in a single assignment by apply(), so a request sees either the old key set or the new
// one, never a mix; limiter state (buckets, in-flight counts) outlives snapshots, and every
// admission carries the limiter that granted it, so requests in flight across a reload finish and
// release where they started.
import { HttpError } from "../http/errors.js";
import { logger } from "../obs/log.js";
import { splitLimits } from "./buckets.js";
import {
  parseTenancyConfig,
  readKeysDir,
  readSaltSecretFile,
  redisPassword,
  TenancyConfigError,
  type KeyEntry,
  type TenancyConfig,
  type TenantLimits,
} from "./config.js";
import { adminDisabledError, adminOnlyError, invalidKeyError, KeyTable, missingKeyError } from "./keys.js";
import { LocalLimiter, type Grant, type Limiter, type Usage } from "./limiter.js";
import { AdapterLoadMeter } from "./adapter-loads.js";
import { ModelPatterns } from "./models.js";
import { RedisLimiter } from "./redis-limiter.js";
import { deriveCacheSalt, deriveOwnerTag } from "./salt.js";

const log = logger("tenancy");

/** A reload that would leave a router with tenant keys with none: refused, the previous keys kept. */
export class EmptyKeySetError extends TenancyConfigError {}

/** A tenant as one snapshot sees it. */
export interface Tenant {
  readonly name: string;
  readonly weight: number;
  readonly priority: number;
  /** the limits this replica enforces (already split per replica when there is no Redis) */
  readonly limits: TenantLimits;
  /** the `cache_salt` to inject, when isolation is on */
  readonly cacheSalt: string | undefined;
  /** the models it may use (its `models` patterns); undefined: every model not private to others */
  readonly models: ModelPatterns | undefined;
  /** what becomes of a body `priority` from this tenant's clients (request-fields.ts) */
  readonly clientPriority: "drop" | "clamp";
}

export interface Admission {
  readonly tenant: Tenant;
  readonly grant: Grant;
  readonly limiter: Limiter;
}

interface Snapshot {
  cfg: TenancyConfig;
  keys: KeyTable;
  tenants: Map<string, Tenant>;
  limiter: Limiter;
  /** the cache-salt secret, from the config or its file (it signs stored responses' owner tags too) */
  salt: string | undefined;
  /** owner tags made under `salt`, by tenant (bounded) */
  ownerTags: Map<string, string>;
}

/** owner tags kept made; past it a tag is made per request (an HMAC) */
const MAX_OWNER_TAGS = 100_000;

export interface TenancyStateOptions {
  now?: () => number;
  /** where SWITCHYARD_REDIS_PASSWORD is read (process.env) */
  env?: NodeJS.ProcessEnv;
}

export class TenancyState {
  private snap!: Snapshot;
  /** a first configuration is in force (a reload has something to keep) */
  private applied = false;
  private readonly local: LocalLimiter;
  private readonly loads: AdapterLoadMeter;
  private redis: RedisLimiter | undefined;
  private readonly retired = new Set<RedisLimiter>();
  /** set in a router worker: the replica's local limits, kept by its primary (src/router/cluster) */
  private group: Limiter | undefined;

  private readonly env: NodeJS.ProcessEnv;

  constructor(cfg: unknown = {}, opts: TenancyStateOptions = {}) {
    this.env = opts.env ?? process.env;
    this.local = new LocalLimiter(opts.now ? { now: opts.now } : {});
    this.loads = new AdapterLoadMeter(opts.now);
    this.apply(cfg);
  }

  /**
   * Validates and swaps in a new configuration (reads keysDir now). Throws on an invalid one and
   * keeps the old: a broken reload must not open the router.
   */
  apply(input: unknown): void {
    try {
      this.swapIn(input);
      this.keysError = undefined;
    } catch (err) {
      // the first config has nothing to keep: the router does not start
      if (this.applied) {
        this.keysError = (err as Error).message;
        if (err instanceof EmptyKeySetError) this.keyReloads.emptied++;
        else this.keyReloads.invalid++;
      }
      throw err;
    }
  }

  /**
   * Reloads refused, by why (the previous keys stayed in force): `emptied` would have left a router
   * that had tenant keys with none, which would switch tenancy off and open every route to anyone.
   */
  readonly keyReloads = { emptied: 0, invalid: 0 };
  /** why the last reload was refused, until one succeeds: the keys in force are the last good set */
  keysError: string | undefined;

  private swapIn(input: unknown): void {
    // parsing is idempotent, so a parsed config (reloadKeys) goes through the same path
    const cfg = parseTenancyConfig(input);
    const keys: KeyEntry[] = [...cfg.keys];
    const admin = [...cfg.adminKeys];
    if (cfg.keysDir) {
      const fromDir = readKeysDir(cfg.keysDir);
      keys.push(...fromDir.keys);
      admin.push(...fromDir.adminKeys);
    }
    // keys are what turns tenancy on, so losing them all (an emptied Secret, a keys file truncated
    // while written) would open the router silently; only a restart takes tenancy off on purpose
    if (keys.length === 0 && this.applied && this.snap.keys.size > 0)
      throw new EmptyKeySetError(
        `the reloaded configuration has no tenant keys${cfg.keysDir ? ` (keys directory ${cfg.keysDir})` : ""}; ` +
          `keeping the previous ${this.snap.keys.size} so tenancy stays on (restart the router to turn tenancy off)`,
      );
    const salt =
      cfg.cacheSaltSecret ??
      (cfg.cacheSaltSecretFile ? readSaltSecretFile(cfg.cacheSaltSecretFile) : undefined);
    const limiter = this.limiterFor(cfg);
    const tenants = new Map<string, Tenant>();
    const names = new Set([...Object.keys(cfg.tenants), ...keys.map((k) => k.tenant)]);
    for (const name of names) {
      const t = cfg.tenants[name] ?? cfg.defaultTenant;
      tenants.set(name, {
        name,
        weight: t.weight,
        priority: t.priority,
        limits: cfg.redis ? t.limits : splitLimits(t.limits, cfg.replicas),
        cacheSalt: t.cacheIsolation && salt ? deriveCacheSalt(salt, name) : undefined,
        models: t.models ? new ModelPatterns(t.models) : undefined,
        clientPriority: t.clientPriority,
      });
    }
    this.local.setOptions({ idleEvictAfter: cfg.idleEvictAfter, maxStates: cfg.maxTenantStates });
    this.snap = { cfg, keys: new KeyTable(keys, admin), tenants, limiter, salt, ownerTags: new Map() };
    this.applied = true;
  }

  /**
   * A router worker: limits without Redis are one budget for the whole replica, kept by the
   * process group's primary through `limiter`, instead of one budget per worker process.
   */
  shareLocalLimits(limiter: Limiter): void {
    this.group = limiter;
    // a Redis limiter falls back to it too: made afresh with the new fallback (called before any
    // request, so the old one has nothing to finish)
    void this.redis?.close();
    this.redis = undefined;
    this.apply(this.snap.cfg);
  }

  /** Re-reads keysDir under the current config (the Secret changed). */
  reloadKeys(): void {
    this.apply(this.snap.cfg);
  }

  get config(): TenancyConfig {
    return this.snap.cfg;
  }

  /** tenant keys in force */
  get keyCount(): number {
    return this.snap.keys.size;
  }

  /** Keys are required once any tenant key is configured. */
  get enabled(): boolean {
    return this.snap.keys.size > 0;
  }

  /** the configuration's rules for the fields the router owns (request-fields.ts) */
  get fieldRules(): { enginePriority: TenancyConfig["enginePriority"]; vllmXargs: readonly string[] } {
    return { enginePriority: this.snap.cfg.enginePriority, vllmXargs: this.snap.cfg.vllmXargs };
  }

  /** Admin endpoints are guarded once tenancy is on or an admin key exists. */
  get adminGuarded(): boolean {
    return this.enabled || this.snap.keys.hasAdmin;
  }

  tenant(name: string): Tenant | undefined {
    return this.snap.tenants.get(name);
  }

  get tenantNames(): string[] {
    return [...this.snap.tenants.keys()];
  }

  /** The tenant a data-plane request belongs to, or a 401 in OpenAI's format. */
  authenticate(authorization: string | string[] | undefined): Tenant {
    const s = this.snap;
    const r = s.keys.check(authorization);
    if (r.kind === "tenant") return s.tenants.get(r.tenant)!;
    if (r.kind === "missing") throw missingKeyError();
    // the admin key is not a data-plane key: it would bypass every tenant limit
    if (r.kind === "admin") throw new HttpError(403, "the admin key cannot be used for inference requests");
    throw invalidKeyError();
  }

  /** Guards admin endpoints: 401 without a valid key, 403 with a tenant key or no admin key set. */
  authenticateAdmin(authorization: string | string[] | undefined): void {
    const s = this.snap;
    if (!this.adminGuarded) return;
    const r = s.keys.check(authorization);
    if (r.kind === "admin") return;
    if (r.kind === "missing") throw missingKeyError();
    if (r.kind === "invalid") throw invalidKeyError();
    throw s.keys.hasAdmin ? adminOnlyError() : adminDisabledError();
  }

  /** Applies the tenant's limits; rejects with 429 (limit named, Retry-After) or 503. */
  async admit(tenant: Tenant, promptEstimate = 0): Promise<Admission> {
    const limiter = this.snap.limiter;
    const grant = await limiter.admit(tenant.name, tenant.limits, Math.max(0, promptEstimate));
    return { tenant, grant, limiter };
  }

  /**
   * The prompt reservation raised to `promptEstimate` once the body is read (a chunked body declared
   * no length at admission); rejects with the tenant's 429 when its prompt budget could not hold it.
   */
  reserve(a: Admission, promptEstimate: number): Promise<void> {
    return a.limiter.reserve(a.grant, promptEstimate);
  }

  /** Token usage once the engine reported it (settles the prompt estimate). */
  record(a: Admission, usage: Usage): void {
    a.limiter.record(a.grant, usage);
  }

  /** The request finished (any way): frees its concurrency slot. Idempotent. */
  release(a: Admission): void {
    a.limiter.release(a.grant);
  }

  /**
   * Charges one LoRA adapter load to the tenant whose request causes it (limits.adapterLoadsPerMinute,
   * on this replica); throws its 429 with Retry-After beyond it.
   */
  chargeAdapterLoad(tenant: Tenant): void {
    this.loads.charge(tenant.name, tenant.limits.adapterLoadsPerMinute ?? 0);
  }

  /** The salt to inject for this tenant (undefined: isolation off), mixed with a client's own salt. */
  cacheSaltFor(tenant: Tenant, clientSalt?: string): string | undefined {
    if (tenant.cacheSalt === undefined) return undefined;
    if (clientSalt === undefined) return tenant.cacheSalt;
    return deriveCacheSalt(this.snap.salt!, tenant.name, clientSalt);
  }

  /**
   * The owner tag of `tenant`'s stored responses (salt.ts); undefined without the router's secret
   * (`cacheSaltSecret` / `cacheSaltSecretFile`), when ownership lives in the router's table alone.
   */
  ownerTag(tenant: string): string | undefined {
    const s = this.snap;
    if (s.salt === undefined) return undefined;
    let tag = s.ownerTags.get(tenant);
    if (tag === undefined) {
      tag = deriveOwnerTag(s.salt, tenant);
      if (s.ownerTags.size < MAX_OWNER_TAGS) s.ownerTags.set(tenant, tag);
    }
    return tag;
  }

  /** In-flight requests of a tenant on this replica's local limiter (tests). */
  localInFlight(tenant: string): number {
    return this.local.inFlight(tenant);
  }

  get localStates(): number {
    return this.local.size;
  }

  async close(): Promise<void> {
    await Promise.all([...this.retired].map((r) => r.close()));
    this.retired.clear();
    await this.redis?.close();
    await this.local.close();
  }

  private limiterFor(cfg: TenancyConfig): Limiter {
    const r = cfg.redis;
    if (!r) {
      if (this.redis) this.retire(this.redis);
      this.redis = undefined;
      return this.group ?? this.local;
    }
    const opts = {
      prefix: r.prefix,
      onError: r.onError,
      timeout: r.timeout,
      leaseTtl: r.leaseTtl,
      replicas: cfg.replicas,
    };
    const password = redisPassword(r.passwordFile, this.env);
    if (this.redis && this.redis.url === r.url && this.redis.password === password) {
      this.redis.setOptions(opts);
      return this.redis;
    }
    if (this.redis) this.retire(this.redis);
    this.redis = new RedisLimiter({ url: r.url, password, ...opts, fallback: this.group ?? this.local });
    return this.redis;
  }

  /** A replaced Redis limiter stays open a while so requests admitted by it can release. */
  private retire(r: RedisLimiter): void {
    this.retired.add(r);
    log.info("redis limit store replaced; the old connection closes in 5 minutes");
    setTimeout(() => {
      this.retired.delete(r);
      void r.close();
    }, 300_000).unref();
  }
}
