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

/** 0 = no limit, for every field. */
export const limitsSchema = z.strictObject({
  requestsPerMinute: z.number().nonnegative().default(0),
  promptTokensPerMinute: z.number().nonnegative().default(0),
  completionTokensPerMinute: z.number().nonnegative().default(0),
  maxConcurrent: z.number().int().nonnegative().default(0),
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
      })
      .optional(),
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
