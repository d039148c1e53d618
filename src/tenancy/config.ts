// Tenancy configuration: tenants (weight, priority, limits, cache isolation), API keys stored only as
// sha256 hashes, admin key hashes, the shared-counter backend. One zod schema; the router embeds it
// under `tenancy:` in its YAML file. Validation errors name the field.
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { duration } from "../config/values.js";
import { InvalidConfigError } from "../errors/index.js";

/**
 * Tenant names end up in metric labels, Redis keys and Secret file names, so they are restricted to
 * what all three accept. A leading `_` is reserved (`_admin` in a keys directory).
 */
export const TENANT_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;
export const tenantName = z
  .string()
  .regex(TENANT_NAME, "tenant names are 1-63 of [A-Za-z0-9._-], not starting with . _ -");

/** `sha256:<64 hex>` or bare 64 hex → lowercase hex. Plain keys are refused so none sits in a file. */
export function normaliseKeyHash(text: string): string | undefined {
  const m = /^(?:sha256:)?([0-9a-fA-F]{64})$/.exec(text.trim());
  return m ? m[1]!.toLowerCase() : undefined;
}

export const keyHash = z.string().transform((v, ctx) => {
  const h = normaliseKeyHash(v);
  if (!h) {
    ctx.addIssue({
      code: "custom",
      message: 'expected a key hash: 64 hex digits or sha256:<64 hex> (printf %s "$KEY" | sha256sum)',
    });
    return z.NEVER;
  }
  return h;
});

/** `vllm_xargs` keys vLLM's connectors read as transfer state: the router's alone. */
export const ROUTER_XARGS: ReadonlySet<string> = new Set(["kv_transfer_params", "ec_transfer_params"]);

/** the password in a redis:// URL's userinfo, undefined when it carries none */
export function urlPassword(url: string): string | undefined {
  try {
    const p = new URL(url).password;
    return p === "" ? undefined : decodeURIComponent(p);
  } catch {
    return undefined;
  }
}

/** 0 = no limit, for every field. */
export const limitsSchema = z.strictObject({
  requestsPerMinute: z.number().nonnegative().default(0),
  promptTokensPerMinute: z.number().nonnegative().default(0),
  completionTokensPerMinute: z.number().nonnegative().default(0),
  maxConcurrent: z.number().int().nonnegative().default(0),
  /**
   * registry LoRA adapter loads the tenant's requests may cause a minute (a load stalls its engine's
   * steps for everyone): charged before the load starts, 429 with Retry-After beyond it; a request
   * for an adapter already loaded (or loading) costs nothing; absent or 0: no limit
   */
  adapterLoadsPerMinute: z.number().nonnegative().optional(),
});
export type TenantLimits = z.output<typeof limitsSchema>;

export const tenantSchema = z.strictObject({
  /** share of the fleet under saturation, relative to the other tenants in the same priority band */
  weight: z.number().positive().default(1),
  /** strict bands: a higher band is always served before a lower one */
  priority: z.number().int().min(-100).max(100).default(0),
  limits: limitsSchema.prefault({}),
  /** inject a per-tenant `cache_salt` so no other tenant can hit (or time) this tenant's prefix cache */
  cacheIsolation: z.boolean().default(false),
  /**
   * the models the tenant may use: exact names and `*` globs over served models, aliases and registry
   * LoRA adapters; absent: every model that is not private to other tenants. A model outside the list
   * is answered as one that does not exist (404).
   */
  models: z.array(z.string().min(1).max(256)).max(1000).optional(),
  /**
   * a body `priority` from this tenant's clients: drop (the engine sees the band's value only) or
   * clamp (kept, moved inside the band's span of engine priorities: it can only order the tenant's
   * own requests, never lift one above its band)
   */
  clientPriority: z.enum(["drop", "clamp"]).default("drop"),
});
export type TenantConfig = z.output<typeof tenantSchema>;

export const tenancyConfigSchema = z
  .strictObject({
    tenants: z.record(tenantName, tenantSchema).default({}),
    /** limits for tenants named by keys but absent from `tenants` */
    defaultTenant: tenantSchema.prefault({}),
    keys: z
      .array(
        z.strictObject({
          hash: keyHash,
          tenant: tenantName,
          /** for people; never logged with the hash */ id: z.string().optional(),
        }),
      )
      .default([]),
    /** a mounted Kubernetes Secret: one file per tenant (hashes, one a line); `_admin` holds admin hashes */
    keysDir: z.string().optional(),
    adminKeys: z.array(keyHash).default([]),
    /**
     * HMAC secret for cache salts and for the owner tags of stored responses (which keep them their
     * owner's through restarts); required when a tenant has cacheIsolation (same on every replica)
     */
    cacheSaltSecret: z.string().min(16).optional(),
    /**
     * the same secret read from a file (a mounted Kubernetes Secret), so it never sits in the config
     * file itself (a ConfigMap); read on every apply, trailing whitespace dropped
     */
    cacheSaltSecretFile: z.string().min(1).optional(),
    queue: z
      .strictObject({
        size: z.number().int().min(0).default(1024),
        perTenant: z.number().int().min(0).default(256),
        timeout: duration.default(30_000),
      })
      .prefault({}),
    /**
     * Without Redis each replica enforces limit / replicas (a documented per-replica split); with
     * Redis the limit holds across replicas and `replicas` only sizes the fallback used on errors.
     */
    replicas: z.number().int().min(1).default(1),
    redis: z
      .strictObject({
        url: z.url({ protocol: /^rediss?$/ }),
        prefix: z.string().default("switchyard:tenancy:"),
        /** open: fall back to the local per-replica split; closed: 503 while Redis is unreachable */
        onError: z.enum(["open", "closed"]).default("open"),
        timeout: duration.default(250),
        /** a concurrency slot held by a replica that died is reclaimed after this */
        leaseTtl: duration.default(3_600_000),
        /**
         * the Redis password read from a file (a mounted Kubernetes Secret), so neither the URL nor the
         * config file carries it; read at each apply, trailing whitespace dropped. Without it,
         * $SWITCHYARD_REDIS_PASSWORD is used when set
         */
        passwordFile: z.string().min(1).optional(),
      })
      .superRefine((r, ctx) => {
        if (r.passwordFile !== undefined && urlPassword(r.url) !== undefined)
          ctx.addIssue({
            code: "custom",
            path: ["url"],
            message: "the URL carries a password and passwordFile is set: keep the password out of the URL",
          });
      })
      .optional(),
    /**
     * vLLM's `priority` (lower is served earlier, with `--scheduling-policy priority`) set from the
     * tenant's band: band b gets `-b × bandWidth`, plus a clamped client value where the tenant allows
     * it. Off (the default): the router sets none, so engines run FCFS as before.
     */
    enginePriority: z
      .strictObject({
        fromBand: z.boolean().default(false),
        /** engine priority values one band spans (a clamped client value is 0..bandWidth-1) */
        bandWidth: z.number().int().min(1).max(1_000_000).default(1000),
      })
      .prefault({}),
    /**
     * the keys of a client's `vllm_xargs` the engine gets; every other key is removed. vLLM copies
     * `vllm_xargs` into the request's `extra_args`, where its KV connectors read `kv_transfer_params`:
     * `kv_transfer_params` and `ec_transfer_params` are never passed, whatever this lists
     */
    vllmXargs: z
      .array(z.string().min(1))
      .default(["agentic_context"])
      .refine((l) => !l.some((k) => ROUTER_XARGS.has(k)), {
        message: "kv_transfer_params and ec_transfer_params are set by the router only",
      }),
    /** tenant states idle this long are dropped (they are full again by then) */
    idleEvictAfter: duration.default(600_000),
    maxTenantStates: z.number().int().min(1).default(100_000),
  })
  .superRefine((c, ctx) => {
    const isolated =
      Object.entries(c.tenants).some(([, t]) => t.cacheIsolation) || c.defaultTenant.cacheIsolation;
    if (isolated && !c.cacheSaltSecret && !c.cacheSaltSecretFile)
      ctx.addIssue({
        code: "custom",
        path: ["cacheSaltSecret"],
        message:
          "a tenant has cacheIsolation: set cacheSaltSecret or cacheSaltSecretFile (the same on every router replica)",
      });
    if (c.cacheSaltSecret && c.cacheSaltSecretFile)
      ctx.addIssue({
        code: "custom",
        path: ["cacheSaltSecretFile"],
        message: "set cacheSaltSecret or cacheSaltSecretFile, not both",
      });
  });

export type TenancyConfigInput = z.input<typeof tenancyConfigSchema>;
export type TenancyConfig = z.output<typeof tenancyConfigSchema>;

export class TenancyConfigError extends InvalidConfigError {}

export function parseTenancyConfig(input: unknown): TenancyConfig {
  const r = tenancyConfigSchema.safeParse(input ?? {});
  if (!r.success)
    throw new TenancyConfigError(
      `invalid tenancy config: ${r.error.issues.map((i) => `tenancy.${i.path.join(".")}: ${i.message}`).join("; ")}`,
    );
  return r.data;
}

export interface KeyEntry {
  hash: string;
  tenant: string;
  id?: string | undefined;
}

export interface KeysFromDir {
  keys: KeyEntry[];
  adminKeys: string[];
}

const MAX_KEY_FILE_BYTES = 1 << 20;

/** The cache-salt secret from `cacheSaltSecretFile`; errors name the file, never its content. */
export function readSaltSecretFile(path: string): string {
  let text: string;
  try {
    if (statSync(path).size > MAX_KEY_FILE_BYTES)
      throw new TenancyConfigError(`salt file ${path} is over 1 MiB`);
    text = readFileSync(path, "utf8").trim();
  } catch (err) {
    if (err instanceof TenancyConfigError) throw err;
    throw new TenancyConfigError(
      `cannot read cacheSaltSecretFile ${path}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
  if (text.length < 16)
    throw new TenancyConfigError(`cacheSaltSecretFile ${path}: the secret needs 16 characters or more`);
  return text;
}

/** the environment variable a Redis password may come from when no passwordFile is set */
export const REDIS_PASSWORD_ENV = "SWITCHYARD_REDIS_PASSWORD";

/**
 * The tenancy Redis password: `passwordFile`'s content (trailing whitespace dropped), else
 * $SWITCHYARD_REDIS_PASSWORD, else none (the URL's own, if any). Errors name the file, never its content.
 */
export function redisPassword(file: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (file === undefined) {
    const v = env[REDIS_PASSWORD_ENV];
    return v !== undefined && v !== "" ? v : undefined;
  }
  let text: string;
  try {
    if (statSync(file).size > MAX_KEY_FILE_BYTES)
      throw new TenancyConfigError(`redis passwordFile ${file} is over 1 MiB`);
    text = readFileSync(file, "utf8").trimEnd();
  } catch (err) {
    if (err instanceof TenancyConfigError) throw err;
    throw new TenancyConfigError(
      `cannot read tenancy.redis.passwordFile ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
  if (text === "") throw new TenancyConfigError(`tenancy.redis.passwordFile ${file} is empty`);
  return text;
}

/**
 * Reads a Kubernetes Secret mounted as a directory. Kubelet's `..data` / `..<timestamp>` entries
 * are skipped; a file per tenant holds hashes one a line (`#` comments and blank lines ignored).
 * A line that is not a hash is an error naming the file and line, never echoing the line (it may
 * be a plain key pasted by mistake).
 */
export function readKeysDir(dir: string): KeysFromDir {
  const out: KeysFromDir = { keys: [], adminKeys: [] };
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (err) {
    throw new TenancyConfigError(
      `cannot read keys directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? "error"}`,
    );
  }
  for (const name of names.sort()) {
    if (name.startsWith(".")) continue;
    const path = join(dir, name);
    const st = statSync(path); // follows kubelet's symlinks
    if (!st.isFile()) continue;
    if (st.size > MAX_KEY_FILE_BYTES) throw new TenancyConfigError(`keys file ${path} is over 1 MiB`);
    const admin = name === "_admin";
    if (!admin && !TENANT_NAME.test(name))
      throw new TenancyConfigError(`keys file ${path}: the file name must be a tenant name (or _admin)`);
    const lines = readFileSync(path, "utf8").split("\n");
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i]!.trim();
      if (line === "" || line.startsWith("#")) continue;
      const h = normaliseKeyHash(line);
      if (!h) throw new TenancyConfigError(`keys file ${path} line ${i + 1}: not a sha256 key hash`);
      if (admin) out.adminKeys.push(h);
      else out.keys.push({ hash: h, tenant: name, id: `${name}:${i + 1}` });
    }
  }
  return out;
}
