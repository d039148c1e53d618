// A stand-in for LMCache 0.5.6's own `lm://` server, written from its documented behaviour (the real one is
// exercised by `npm run test:interop`): requests handled in order per connection; every key parsed as a
// CacheEngineKey (model@world_size@worker_id@chunk_hash_hex@dtype[@tag%value...]) and the connection
// dropped on a key that does not parse, whatever the command; LIST read and never answered.
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";

const OK = 200;
const FAIL = 400;
const DTYPES = new Set([
  "half",
  "bfloat16",
  "float",
  "double",
  "int8",
  "uint8",
  "int16",
  "int32",
  "int64",
  "bool",
]);

/** LMCache's CacheEngineKey.from_string rules: null when it would raise. */
export function parsesAsLmcacheKey(key: string): boolean {
  const parts = key.split("@");
  if (parts.length < 5) return false;
  if (!/^-?\d+$/.test(parts[1]!) || !/^-?\d+$/.test(parts[2]!)) return false;
  if (!/^-?[0-9a-fA-F]+$/.test(parts[3]!)) return false;
  if (!DTYPES.has(parts[4]!)) return false;
  // a 6th part of digits is a layer id; the rest must be tag%value
  return parts.slice(5).every((p, i) => (i === 0 && /^\d+$/.test(p)) || p.includes("%"));
}

function reply(code: number, length = 0, fmt = 1, dtype = 2, shape = [0, 0, 0, 0]): Buffer {
  const b = Buffer.alloc(36);
  [code, length, fmt, dtype, ...shape, 0].forEach((v, i) => b.writeInt32LE(v, i * 4));
  return b;
}

export interface FakeLmcache {
  port: number;
  /** keys refused (the connection was dropped on each) */
  refused: string[];
  /** commands received, in order */
  commands: number[];
  connections: number;
  close(): Promise<void>;
}

export async function startFakeLmcache(): Promise<FakeLmcache> {
  const store = new Map<string, { payload: Buffer; fmt: number; dtype: number; shape: number[] }>();
  const sockets = new Set<Socket>();
  const state: Omit<FakeLmcache, "port" | "close"> = { refused: [], commands: [], connections: 0 };
  const server: Server = createServer((s) => {
    sockets.add(s);
    state.connections++;
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    let buf = Buffer.alloc(0);
    s.on("data", (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      for (;;) {
        if (buf.length < 186) return;
        const cmd = buf.readInt32LE(0);
        const length = buf.readInt32LE(4);
        const key = buf.toString("latin1", 36, 186).trim();
        if (!parsesAsLmcacheKey(key)) {
          state.refused.push(key);
          s.destroy(); // "ValueError: Invalid key string", the handler thread ends, the socket closes
          return;
        }
        if (cmd === 1 && buf.length < 186 + length) return;
        state.commands.push(cmd);
        const shape = [0, 1, 2, 3].map((i) => buf.readInt32LE(20 + 4 * i));
        const fmt = buf.readInt32LE(8);
        const dtype = buf.readInt32LE(12);
        if (cmd === 1) {
          store.set(key, { payload: Buffer.from(buf.subarray(186, 186 + length)), fmt, dtype, shape });
          buf = buf.subarray(186 + length);
          continue;
        }
        buf = buf.subarray(186);
        if (cmd === 2) {
          const o = store.get(key);
          s.write(
            o
              ? Buffer.concat([reply(OK, o.payload.length, o.fmt, o.dtype, o.shape), o.payload])
              : reply(FAIL),
          );
        } else if (cmd === 3) s.write(reply(store.has(key) ? OK : FAIL));
        else if (cmd === 5) s.write(reply(OK));
        // LIST (4): not implemented, no answer
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    get refused() {
      return state.refused;
    },
    get commands() {
      return state.commands;
    },
    get connections() {
      return state.connections;
    },
    port: (server.address() as AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
