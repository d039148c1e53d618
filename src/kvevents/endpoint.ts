// ZMQ endpoint rules shared by the publisher and the subscriber, as vLLM applies them.
import { isIP } from "node:net";

/**
 * vLLM binds when the endpoint is a wildcard (`*`, `::`) or a local transport (ipc, inproc), and
 * connects otherwise (the engine then pushes to a collector that binds). Port 0 binds as well: it can
 * only mean "any free port".
 */
export function endpointBinds(endpoint: string): boolean {
  if (endpoint.startsWith("ipc://") || endpoint.startsWith("inproc://")) return true;
  if (endpoint.includes("*") || endpoint.includes("::")) return true;
  return /:0$/.test(endpoint);
}

/**
 * Data-parallel rank r publishes on base port + r, so that the ranks of one server do not collide.
 * An ephemeral port (`*` or 0) is left alone; ipc/inproc names get a `_dp<r>` suffix for r > 0.
 */
export function offsetEndpoint(endpoint: string, rank: number | null | undefined): string {
  if (!rank) return endpoint;
  if (endpoint.startsWith("ipc://") || endpoint.startsWith("inproc://")) return `${endpoint}_dp${rank}`;
  const m = /^(tcp:\/\/.*):(\d+)$/.exec(endpoint);
  if (!m) return endpoint;
  const port = Number(m[2]);
  if (port === 0) return endpoint;
  const shifted = port + rank;
  if (shifted > 65535) throw new RangeError(`${endpoint}: port + data-parallel rank ${rank} exceeds 65535`);
  return `${m[1]}:${shifted}`;
}

/** `tcp://0.0.0.0:5557` as reported by a bound socket → an address a local client can connect to. */
export function connectableEndpoint(bound: string): string {
  return bound.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:").replace("tcp://[::]:", "tcp://[::1]:");
}

/**
 * A wildcard TCP endpoint (`tcp://*:5557`) bound on one address instead of every interface: the
 * address a server was told to listen on (`--host 127.0.0.1`). vLLM binds its KV-event sockets on
 * every interface whatever its `--host`; a server asked to stay on loopback should not expose them.
 * Only an IP literal narrows the bind (`localhost` as 127.0.0.1); `0.0.0.0`, `::`, names and other
 * transports leave the endpoint as it is. `ipv6` says whether the socket needs IPv6 turned on.
 */
export function wildcardOnHost(
  endpoint: string,
  host: string | undefined,
): { endpoint: string; ipv6: boolean } {
  const m = /^tcp:\/\/\*:(\d+|\*)$/.exec(endpoint);
  if (!m || !host) return { endpoint, ipv6: false };
  const h = host === "localhost" ? "127.0.0.1" : host.replace(/^\[(.*)\]$/, "$1");
  if (isIP(h) === 4 && h !== "0.0.0.0") return { endpoint: `tcp://${h}:${m[1]}`, ipv6: false };
  if (isIP(h) === 6 && h !== "::") return { endpoint: `tcp://[${h}]:${m[1]}`, ipv6: true };
  return { endpoint, ipv6: false };
}
