// The data plane takes and frees slots on its picks through one SlotClaims
// (src/router/dataplane/slot-claims.ts). A lone router's are the registry's slot operations and nothing
// more; a router worker's (src/router/cluster/worker-claims.ts) make load-aware picks claims. These
// tests hold each implementation to what the data plane counts on, without a live router.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../../src/router/config/config.js";
import { EngineRegistry } from "../../../src/router/engines/engine-registry.js";
import type { EngineRecord } from "../../../src/router/engines/engine-record.js";
import {
  LoneSlotClaims,
  type ClaimingRequest,
  type PickHost,
  type SlotClaims,
} from "../../../src/router/dataplane/slot-claims.js";
import { WorkerSlotClaims } from "../../../src/router/cluster/worker-claims.js";
import { Claims } from "../../../src/router/cluster/claims.js";
import { SharedLoad } from "../../../src/router/cluster/shared-load.js";
import { PickExchange } from "../../../src/router/cluster/picks.js";
import { HitWatchdog } from "../../../src/router/kv/watchdog.js";
import { createPolicy, PrefixIndex } from "../../../src/routing/index.js";

function registryWith(urls: string[]): EngineRegistry {
  const reg = new EngineRegistry(parseConfig({}));
  // records only, no probes
  reg.leader = { failure: () => undefined, shutdown: () => undefined, success: () => undefined };
  for (const url of urls) reg.upsert({ url, weight: 1 });
  return reg;
}

function request(): ClaimingRequest {
  return { claim: 0, current: undefined, repicked: undefined };
}

/** A data plane that picks `e` every time and says how often it was asked to. */
function hostPicking(e: EngineRecord, claims: () => SlotClaims<ClaimingRequest>) {
  const said = { acquired: 0, unpicked: 0 };
  const host: PickHost<ClaimingRequest> = {
    acquire: (req, word) => {
      said.acquired++;
      claims().take(e, req, performance.now(), word);
      return e;
    },
    unpick: () => void said.unpicked++,
  };
  return { host, said };
}

test("a lone router's picks stand as made: a slot on the registry, no claim, and a standing pick is the engine itself, not a promise", async () => {
  const reg = registryWith(["http://a:1"]);
  const a = reg.engines.get("http://a:1")!;
  // the host calls back into the claims it serves (only once they exist)
  const { host, said } = hostPicking(a, () => lone);
  const lone = new LoneSlotClaims(reg, host);
  const req = request();
  lone.take(a, req, performance.now());
  assert.equal(a.view.inFlight, 1);
  assert.equal(req.claim, 0, "nothing awaits a word");
  lone.free(a, req, false);
  assert.equal(a.view.inFlight, 0);
  const got = lone.standing(req);
  assert.equal(got, a, "answered at once: no promise to await");
  assert.equal(said.acquired, 1);
  assert.equal(req.claim, 0);
  lone.free(a, req, false);
  assert.equal(a.view.inFlight, 0);
  await reg.close();
});

test("a router worker's pick is a claim only where its policy reads load, and a request done with its slot lets go of its claim", async () => {
  const reg = registryWith(["http://a:1"]);
  const a = reg.engines.get("http://a:1")!;
  const load = new SharedLoad(reg);
  const picks = new PickExchange(
    { prefix: new PrefixIndex(), watchdog: new HitWatchdog() },
    () => undefined,
    true,
  );
  let loadAware = false;
  const sent: unknown[] = [];
  const claims = new Claims(
    reg,
    load,
    picks,
    (m) => sent.push(m),
    () => loadAware,
    () => createPolicy("least-load"),
    () => undefined,
  );
  const { host, said } = hostPicking(a, () => worker);
  const worker = new WorkerSlotClaims(claims, reg, host);

  // round-robin reads no load: the slot is taken, nothing is claimed or sent
  const plain = request();
  worker.take(a, plain, performance.now());
  assert.equal(plain.claim, 0);
  assert.equal(a.view.inFlight, 1);
  assert.equal(sent.length, 0);
  worker.free(a, plain, false);
  assert.equal(a.view.inFlight, 0);

  // a load-aware pick awaits the primary's word; the request ends first and lets go of it
  loadAware = true;
  const claimed = request();
  worker.take(a, claimed, performance.now());
  const id = claimed.claim;
  assert.notEqual(id, 0, "the pick awaits the word");
  assert.equal(sent.length, 1, "the claim went to the primary");
  assert.equal(a.view.inFlight, 1, "counted here at once");
  worker.free(a, claimed, false);
  assert.equal(claimed.claim, 0);
  assert.equal(a.view.inFlight, 0);
  // the late refusal is moot: nothing is decided again
  claims.answer([[id, false]]);
  assert.equal(said.acquired, 0);
  assert.equal(said.unpicked, 0);
  claims.close();
  picks.close();
  await reg.close();
});
