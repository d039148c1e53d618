// Per-tenant cache salts. vLLM mixes `cache_salt` into the hash of a request's first KV block, so
// requests with different salts never share prefix-cache blocks: one tenant cannot learn from
// cache-hit timing whether another sent a prompt. The salt is an HMAC of the tenant name under a
// router secret: stable across restarts and replicas (so a tenant keeps its own cache hits),
// unguessable without the secret.
import { createHmac } from "node:crypto";

export function deriveCacheSalt(secret: string, tenant: string, clientSalt?: string): string {
  const h = createHmac("sha256", secret).update("switchyard/cache-salt/v1\0").update(tenant);
  // a client's own salt still partitions further inside its tenant, but cannot escape the tenant
  if (clientSalt !== undefined) h.update("\0").update(clientSalt);
  return h.digest("base64url");
}
