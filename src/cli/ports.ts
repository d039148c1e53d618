// Which ports `switchyard up` needs, whether each is free, and who holds one that is not. A port is
// often taken by the previous stack, killed without a chance to stop its children, and libzmq's bare
// "Address already in use" names neither the port nor its holder. So every port is tried before
// anything starts, and a taken one is reported with its holder where the OS says:
// on Linux, the listening socket's inode in /proc/net/tcp{,6} and the process with that inode among its
// open files. Best effort and bounded: processes of other users cannot be read, and the scan stops
// after MAX_PIDS processes or SCAN_BUDGET_MS.
import { readdir, readFile, readlink } from "node:fs/promises";
import { createServer } from "node:net";

/** One port the stack binds, and what it is for (said in errors). */
export interface StackPort {
  port: number;
  what: string;
  /** the flag that moves it */
  flag: string;
}

const MAX_PIDS = 4096;
const SCAN_BUDGET_MS = 2000;

/** Rejects with the bind error when host:port cannot be listened on; closes it again at once. */
function tryBind(port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen({ port, host, exclusive: true }, () => srv.close(() => resolve()));
  });
}

/** A listening TCP socket from /proc/net/tcp{,6}: its address, port and inode. */
export interface Listener {
  address: string;
  port: number;
  inode: string;
}

/** /proc/net/tcp's hex address (IPv4 in host byte order, little-endian here) as text. */
function hexAddress(hex: string): string {
  if (hex.length === 8) {
    const b = Buffer.from(hex, "hex");
    return `${b[3]}.${b[2]}.${b[1]}.${b[0]}`;
  }
  // IPv6: four 32-bit words, each little-endian
  const words: string[] = [];
  for (let i = 0; i < 32; i += 8) {
    const w = Buffer.from(hex.slice(i, i + 8), "hex")
      .reverse()
      .toString("hex");
    words.push(w.slice(0, 4), w.slice(4));
  }
  return words.map((w) => w.replace(/^0+(?=.)/, "")).join(":");
}

/** Listening TCP sockets on `port` (Linux); none where /proc cannot be read. */
export async function listenersOn(port: number): Promise<Listener[]> {
  const out: Listener[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = await readFile(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode; st 0A = LISTEN
      if (f.length < 10 || f[3] !== "0A") continue;
      const [addr, hexPort] = f[1]!.split(":");
      if (parseInt(hexPort!, 16) !== port) continue;
      out.push({ address: hexAddress(addr!), port, inode: f[9]! });
    }
  }
  return out;
}

/** The process holding a socket inode and its command line, from /proc/<pid>/fd; null when unseen. */
async function holderOf(inode: string): Promise<{ pid: number; command: string } | null> {
  const want = `socket:[${inode}]`;
  const deadline = Date.now() + SCAN_BUDGET_MS;
  let pids: string[];
  try {
    pids = (await readdir("/proc")).filter((d) => /^\d+$/.test(d)).slice(0, MAX_PIDS);
  } catch {
    return null;
  }
  for (const pid of pids) {
    if (Date.now() > deadline) return null;
    let fds: string[];
    try {
      fds = await readdir(`/proc/${pid}/fd`);
    } catch {
      continue; // another user's, or gone
    }
    for (const fd of fds) {
      let target: string;
      try {
        target = await readlink(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      if (target !== want) continue;
      let command = "";
      try {
        command = (await readFile(`/proc/${pid}/cmdline`, "utf8")).replace(/\0+$/, "").replace(/\0/g, " ");
      } catch {
        // gone meanwhile
      }
      return { pid: Number(pid), command: command.length > 160 ? `${command.slice(0, 157)}...` : command };
    }
  }
  return null;
}

/** Who listens on `port`, in words: "pid 1234 (node .../main.js sim ...)", or null when unknown. */
export async function describeHolder(port: number): Promise<string | null> {
  for (const l of await listenersOn(port)) {
    const h = await holderOf(l.inode);
    if (h) return `pid ${h.pid}${h.command ? ` (${h.command})` : ""}`;
  }
  return null;
}

/**
 * Tries every port on `host`; resolves with one message per port that cannot be bound, naming it,
 * what it is for, the flag that moves it and, where the OS says, the process holding it.
 */
export async function portProblems(ports: readonly StackPort[], host: string): Promise<string[]> {
  const out: string[] = [];
  for (const p of ports) {
    try {
      await tryBind(p.port, host);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== "EADDRINUSE") {
        out.push(`port ${p.port} (${p.what}) on ${host}: ${(err as Error).message}`);
        continue;
      }
      const holder = await describeHolder(p.port);
      out.push(
        `port ${p.port} (${p.what}) on ${host} is in use${holder ? ` by ${holder}` : " (by a process this user cannot see)"}; stop it or move the port with ${p.flag}`,
      );
    }
  }
  return out;
}
