// A client built from the protocol description alone (not from src/cacheserver), so that tests
// check the server against the wire format rather than against our own encoder.
import { connect, type Socket } from "node:net";

export function clientHeader(
  cmd: number,
  key: string,
  length = 0,
  fmt = 1,
  dtype = 3,
  location = 0,
  shape = [0, 0, 0, 0],
) {
  const b = Buffer.alloc(186, 0x20);
  [cmd, length, fmt, dtype, location, ...shape].forEach((v, i) => b.writeInt32LE(v, i * 4));
  b.write(key, 36, "ascii");
  return b;
}

/** A socket plus a reader that waits for exactly n bytes. */
export class RawConn {
  private chunks: Buffer[] = [];
  private have = 0;
  private want: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  closed = false;
  readonly closedP: Promise<void>;

  private constructor(readonly socket: Socket) {
    socket.on("data", (c: Buffer) => {
      this.chunks.push(c);
      this.have += c.length;
      this.pump();
    });
    this.closedP = new Promise((resolve) =>
      socket.on("close", () => {
        this.closed = true;
        this.want?.reject(new Error("closed"));
        resolve();
      }),
    );
    socket.on("error", () => {});
  }

  /** `localAddress`: another loopback address (127.0.0.2...) to come from, for source-address rules. */
  static open(port: number, localAddress?: string): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port, localAddress }, () => resolve(new RawConn(s)));
      s.once("error", reject);
    });
  }

  private pump() {
    // join only once enough bytes are in: no quadratic re-copying of large replies
    if (this.want && this.have >= this.want.n) {
      const all = Buffer.concat(this.chunks, this.have);
      const out = Buffer.from(all.subarray(0, this.want.n));
      this.chunks = this.have > this.want.n ? [all.subarray(this.want.n)] : [];
      this.have -= this.want.n;
      const w = this.want;
      this.want = undefined;
      w.resolve(out);
    }
  }

  read(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      if (this.closed && this.have < n) return reject(new Error("closed"));
      this.want = { n, resolve, reject };
      this.pump();
    });
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  async put(key: string, payload: Buffer, fmt = 4, dtype = 6): Promise<void> {
    this.write(clientHeader(1, key, payload.length, fmt, dtype, 0, [payload.length, 0, 0, 0]));
    this.write(payload);
  }

  /** [code, length, fmt, dtype, s0..s3, location] */
  async reply(): Promise<number[]> {
    const h = await this.read(36);
    return Array.from({ length: 9 }, (_, i) => h.readInt32LE(i * 4));
  }

  async get(key: string): Promise<Buffer | undefined> {
    this.write(clientHeader(2, key));
    const h = await this.reply();
    if (h[0] !== 200) return undefined;
    return this.read(h[1]!);
  }

  /** LIST: the keys the server shows this connection. */
  async list(): Promise<string[]> {
    this.write(clientHeader(4, ""));
    const h = await this.reply();
    const text = (await this.read(h[1]!)).toString("latin1");
    return text === "" ? [] : text.split("\n");
  }

  async exist(key: string): Promise<boolean> {
    this.write(clientHeader(3, key));
    return (await this.reply())[0] === 200;
  }

  close(): Promise<void> {
    this.socket.end();
    return this.closedP;
  }
}
