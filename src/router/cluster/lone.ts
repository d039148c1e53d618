// A router without workers that has peers (other replicas): its own process is the replica, so the
// peer link reads its in-flight counts and picks directly, and adds the others' into its views.
import type { Router } from "../edge/server.js";
import { PeerSync } from "./peers.js";
import { PickExchange } from "./picks.js";
import { SharedLoad, queuedPrefillOf } from "./shared-load.js";

/** Starts the peer link of a lone router; null without `peers.bind`. */
export async function startLonePeers(router: Router): Promise<{ close(): Promise<void> } | null> {
  if (!router.config.peers.bind) return null;
  const load = new SharedLoad(
    router.registry,
    queuedPrefillOf(() => router.routingPolicy),
  );
  // picks wait for the next report: nothing to schedule
  const picks = new PickExchange(
    { prefix: router.cache.prefix.index, watchdog: router.cache.watchdog },
    () => {},
  );
  // response ids go out with each report too
  router.affinity.sharing = true;
  const peers = await PeerSync.start(router.config.peers, {
    load: () => load.group(() => false),
    takePicks: () => picks.take(),
    peerLoad: (source, l) => void load.replace(source, l),
    peerGone: (source) => load.drop(source),
    peerPicks: (p) => picks.apply(p),
    takeResponses: () => router.affinity.take(),
    peerResponses: (links, signed) => router.affinity.applyFromPeer(links, signed, router.gate.enabled),
  });
  return {
    close: async () => {
      await peers?.close();
      picks.close();
    },
  };
}
