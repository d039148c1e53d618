// Per-tenant cache salts. vLLM mixes `cache_salt` into the hash of a request's first KV block, so
// requests with different salts never share prefix-cache blocks: one tenant cannot learn from
// cache-hit timing whether another sent a prompt. The salt is an HMAC of the tenant name under a
// router secret: stable across restarts and replicas (so a tenant keeps its own cache hits),
// unguessable without the secret. The same secret signs the owner tag of stored responses.
import { createHmac } from "node:crypto";

export function deriveCacheSalt(secret: string, tenant: string, clientSalt?: string): string {
  const h = createHmac("sha256", secret).update("switchyard/cache-salt/v1\0").update(tenant);
  // a client's own salt still partitions further inside its tenant, but cannot escape the tenant
  if (clientSalt !== undefined) h.update("\0").update(clientSalt);
  return h.digest("base64url");
}

/**
 * The owner tag written into a tenant's stored responses (their `metadata`): an HMAC of the tenant
 * name under the same router secret, in its own domain, so it is stable across restarts and replicas
 * and no tenant can make another's (src/router/dataplane/response-affinity.ts).
 */
export function deriveOwnerTag(secret: string, tenant: string): string {
  return createHmac("sha256", secret)
    .update("switchyard/response-owner/v1\0")
    .update(tenant)
    .digest("base64url");
}
