// The router as the endpoint picker's host (src/epp/types.ts): its registry snapshot, its policy
// object (KV-event and prefix oracle included), its in-flight counters, admission queue and metrics.
// Nothing is copied: an EPP-routed request is decided, counted and queued exactly like a proxied one,
// and meets the same tenancy gate (keys, limits, cache salt, fair-queue flow) and upstream
// credential rule as one sent to the router over HTTP.
import {
  EppServer,
  type EppSettings,
  type Decided,
  type PathRule,
  type RoutingHost,
  type Slot,
} from "../../epp/index.js";
import type { StoredResponse } from "../../epp/types.js";
import { HttpError } from "../../http/errors.js";
import { OWNER_METADATA_KEY } from "../../tenancy/router-gate.js";
import type { RouterConfig } from "../config/config.js";
import { flowOf, queueAskOf } from "./ingress.js";
import { endpointOf, matchEndpoint, notRelayed, routingInput } from "../request/endpoints.js";
import type { Router } from "./server.js";
import { FORWARDED_HEADERS, upstreamAuthorization } from "../engines/upstream-rules.js";
import {
  followUpWaitMs,
  locateResponse,
  ownerMay,
  responseNotFound,
  ResponseIdScan,
  type ResponseHome,
} from "../dataplane/response-affinity.js";
import type { Issued } from "../dataplane/issued-ids.js";

/**
 * The endpoint table's word for the picker: what the router relays is picked (stored responses pinned
 * to their engine); `GET /v1/models`, the router's own list, still goes to an engine (its list, under
 * the tenancy gate); every other path gets the answer the HTTP edge gives it, so per-engine operations
 * and the router's own routes (`/metrics`) never reach an engine through the gateway.
 */
function pathRule(method: string, path: string): PathRule {
  const m = matchEndpoint(path);
  const e = m?.endpoint;
  if (e?.served === "relay" && (method === "GET" || method === "POST") && e.methods.includes(method))
    return {
      pathId: e.pin === "path-id" ? m!.id : undefined,
      previousResponse: e.pin === "previous-response-id",
      remembers: e.remembers,
      abortIds: e.abortIds,
      jsonBody: e.body === "json" && method === "POST",
    };
  if (method === "GET" && path === "/v1/models") return {};
  if (e?.served === "router")
    return {
      refusal: new HttpError(404, `${path} is the router's own route: ask the router, not the gateway`),
    };
  return { refusal: notRelayed(method, path, m) };
}

function settingsOf(c: RouterConfig): EppSettings {
  return {
    sessionHeader: c.session.header,
    sessionBodyKey: c.session.bodyKey,
    maxBodyBytes: c.limits.maxBodyBytes,
    fallbacks: c.epp.fallbacks ?? c.retry.maxAttempts - 1,
    streamTimeoutMs: c.timeouts.total,
    aliases: c.aliases,
  };
}

export function routingHost(router: Router): RoutingHost {
  const reg = router.registry;
  // built once per configuration (a reload makes a new config object)
  let cfg: RouterConfig | undefined;
  let settings: EppSettings | undefined;
  const claim = (engineId: string, decided?: Decided): Slot | undefined => {
    const e = reg.engines.get(engineId);
    if (!e || e.draining) return undefined;
    reg.takeSlot(e);
    // Envoy relays the answer, so its first token is never seen here (late binding leaves it out)
    e.view.unstreamed = (e.view.unstreamed ?? 0) + 1;
    let held = true;
    const at = performance.now();
    return {
      engineId,
      release: (completed = false) => {
        if (!held) return;
        held = false;
        // the policy hears of the end first (what it holds for the request is let go), as the proxy
        // tells it, timed from the claim (the gateway's request arrived about then)
        if (decided) {
          const elapsed = performance.now() - at;
          if (completed) decided.policy.onDone?.(decided.view, e.view, elapsed);
          else decided.policy.onAbandoned?.(decided.view, e.view, elapsed);
        }
        // as the proxy releases its slot: a draining engine may now leave, a waiter may proceed
        // Envoy relays the answer, so its first token is not seen here: counted when it ends
        if (e.view.unstreamed) e.view.unstreamed--;
        reg.freeSlot(e, false);
        router.queue.kick(1);
      },
    };
  };
  return {
    snapshot: () => reg.snapshot(),
    policy: () => router.routingPolicy,
    settings: () => {
      if (router.config !== cfg) {
        cfg = router.config;
        settings = settingsOf(cfg);
      }
      return settings!;
    },
    knowsModel: (model) => reg.knowsModel(model),
    // the HTTP edge's rule (ingress.ts): a model the tenant may not use is one that does not exist
    mayUse: (tenant, requested, served) =>
      router.gate.mayUse(tenant, requested, served, (n) => reg.adapters?.registry.privateTo(n)),
    soleModel: () => {
      let only: string | undefined;
      for (const e of reg.engines.values()) {
        for (const m of e.view.models) {
          if (only === undefined) only = m;
          else if (only !== m) return undefined;
        }
      }
      return only;
    },
    claim,
    pathRule,
    upstreamHeaders: FORWARDED_HEADERS,
    storedResponse: (id, tenant, withSlot) => {
      const at = (
        home: ResponseHome | undefined,
      ): StoredResponse | undefined | Promise<StoredResponse | undefined> => {
        // the HTTP edge's rule (ingress.ts): another tenant's, or an unowned one with tenancy on, is not
        // there, unless an engine holds it under this tenant's owner tag
        if (!ownerMay(home, tenant)) {
          const t = tenant !== undefined ? router.tenancy.tenant(tenant) : undefined;
          const tag = t ? router.gate.ownerTag(t) : undefined;
          if (tag === undefined) throw responseNotFound(id);
          return locateResponse(reg, router.affinity, id, undefined, {
            tenant: tenant!,
            tag,
            field: OWNER_METADATA_KEY,
          }).then((found) => {
            if (found === undefined) throw responseNotFound(id);
            return placed(found);
          });
        }
        return placed(home);
      };
      const placed = (home: ResponseHome | undefined): StoredResponse | undefined => {
        if (!home) return undefined;
        const e = reg.engines.get(home.engine);
        if (!e) throw responseNotFound(id);
        const slot = withSlot ? claim(e.url) : undefined;
        if (withSlot && !slot) throw responseNotFound(id);
        return { engineId: e.url, slot };
      };
      const home = router.affinity.home(id);
      // a router group with tenancy on: the entry's time to arrive, as over HTTP (and as long for
      // another tenant's, so the delay tells nothing)
      if (tenant === undefined || !router.affinity.sharing || home?.owner === tenant) return at(home);
      const ms = followUpWaitMs(router.config.peers);
      return home === undefined
        ? router.affinity.arrival(id, ms).then(at)
        : new Promise((resolve) => setTimeout(resolve, ms)).then(() => at(home));
    },
    watchResponse: (model, tenant) => {
      const scan = new ResponseIdScan();
      return (chunk, engineId) => {
        const id = scan.feed(chunk);
        if (id === undefined) return false;
        if (id !== null) router.affinity.remember(id, engineId, model, undefined, tenant);
        return true;
      };
    },
    issue: (tenant, upstreamId, clientId) => router.issued.add(tenant, upstreamId, clientId),
    endIssued: (issued) => router.issued.remove(issued as Issued),
    scopeAbort: (tenant, ids, keepUnknown) => router.issued.scope(tenant, ids, keepUnknown),
    waitForRoom: (tryAcquire, signal, tenant, view) =>
      router.queue.wait(
        tryAcquire,
        signal,
        flowOf(tenant),
        view?.body ? queueAskOf(view.body, router.config) : undefined,
      ),
    gate: router.gate,
    upstreamAuthorization: (engineId, clientAuthorization) => {
      const e = reg.engines.get(engineId);
      // an engine that left: nothing of the client's goes on that the rule would not send
      if (!e) return router.config.engineApiKey === undefined ? clientAuthorization : undefined;
      return upstreamAuthorization(e.spec, router.config, clientAuthorization);
    },
    ready: () => !router.draining && reg.anyReady(),
    routingInput: (path, parsed) => routingInput(endpointOf(path), parsed),
    explain: (view) => router.cache.explain(view),
    mayDebug: (key) => router.gate.mayDebug(router.config.debug.allowHeader, key),
    metrics: router.metrics,
  };
}

/** Starts the endpoint picker beside the router when the config names a port. */
export async function startEndpointPicker(router: Router): Promise<EppServer | undefined> {
  const c = router.config;
  if (c.epp.port === undefined) return undefined;
  const epp = new EppServer(routingHost(router), {
    host: c.epp.host ?? c.host,
    port: c.epp.port,
    tlsCertFile: c.epp.tlsCertFile,
    tlsKeyFile: c.epp.tlsKeyFile,
    tlsClientCaFile: c.epp.tlsClientCaFile,
    maxStreams: c.epp.maxStreams,
    // a BUFFERED body arrives in one message: room for the largest body plus its framing
    maxMessageBytes: c.limits.maxBodyBytes + 64 * 1024,
  });
  await epp.start();
  return epp;
}
