// A test load balancer for router replicas: each client connection goes to the next backend in
// turn and its bytes are piped both ways, as a Kubernetes Service (kube-proxy) does. Not a product:
// no health checks, no retries; the benchmarks put two replicas behind one port with it.
import { createServer, connect, type Server, type Socket } from "node:net";
import type { AddressInfo } from "node:net";

export interface Balancer {
  port: number;
  /** connections sent to each backend */
  counts: number[];
  close(): Promise<void>;
}

/** Listens on 127.0.0.1:port (0: any) and deals connections out to `backends` (host:port) in turn. */
export async function startBalancer(backends: { host: string; port: number }[], port = 0): Promise<Balancer> {
  let next = 0;
  const counts = backends.map(() => 0);
  const open = new Set<Socket>();
  const server: Server = createServer((client) => {
    const i = next++ % backends.length;
    counts[i]!++;
    const b = backends[i]!;
    const upstream = connect(b.port, b.host);
    open.add(client).add(upstream);
    client.setNoDelay(true);
    upstream.setNoDelay(true);
    client.pipe(upstream);
    upstream.pipe(client);
    const end = () => {
      client.destroy();
      upstream.destroy();
      open.delete(client);
      open.delete(upstream);
    };
    client.on("error", end);
    upstream.on("error", end);
    client.on("close", end);
    upstream.on("close", end);
  });
  await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
  return {
    port: (server.address() as AddressInfo).port,
    counts,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of open) s.destroy();
      }),
  };
}
