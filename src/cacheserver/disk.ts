// The disk tier: objects evicted from memory are written here and served from here. Each object is
// one file `<seq>.kv` (seq = a counter that never repeats, so a stale write can never overwrite or
// unlink a newer version of the same key). Writes go to `<seq>.kv.tmp`, are fsynced, then renamed,
// so a crash leaves either a complete object or a temp file that the next start deletes.
// Bounded by maxBytes with its own LRU; a disk hit refreshes the object's place in that LRU.
import { mkdir, open, readdir, rename, stat, unlink } from "node:fs/promises";
import { join } from "node:path";
import type { Logger } from "../obs/log.js";
import type { ObjectMeta } from "./protocol.js";
import type { StoredObject } from "./memory.js";
import { InvariantError } from "../errors/index.js";

const MAGIC = 0x4b565953; // "SYVK" little-endian: Switchyard KV file
const VERSION = 1;
const FILE_HEADER_BYTES = 64;
const MAX_KEY_BYTES = 1024;

export interface DiskEntry {
  key: string;
  file: string;
  seq: number;
  /** bytes the file takes (header + key + payload), what max-disk bounds */
  fileBytes: number;
  length: number;
  meta: ObjectMeta;
}

interface PendingWrite {
  obj: StoredObject;
  seq: number;
}

export interface DiskStats {
  objects: number;
  usedBytes: number;
  maxBytes: number;
  writesInFlight: number;
}

function encodeFileHeader(seq: number, obj: StoredObject): Buffer {
  const h = Buffer.alloc(FILE_HEADER_BYTES);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(VERSION, 4);
  h.writeUIntLE(seq, 8, 6);
  h.writeInt32LE(obj.payload.length, 16);
  h.writeInt32LE(obj.meta.fmt, 20);
  h.writeInt32LE(obj.meta.dtype, 24);
  for (let i = 0; i < 4; i++) h.writeInt32LE(obj.meta.shape[i]!, 28 + 4 * i);
  h.writeUInt32LE(obj.key.length, 44);
  return h;
}

/** The file an object of write number `seq` is kept in. */
export function objectFileName(seq: number): string {
  return `${seq.toString(16).padStart(12, "0")}.kv`;
}

/** An object's file as the pieces written in order: header, key, payload (tests lay out a disk with it). */
export function objectFileParts(seq: number, obj: StoredObject): Buffer[] {
  return [encodeFileHeader(seq, obj), Buffer.from(obj.key, "latin1"), ...obj.payload.chunks];
}

/** What is left of `parts` after its first `written` bytes went out. */
function unwritten(parts: Buffer[], written: number): Buffer[] {
  let i = 0;
  while (i < parts.length && written >= parts[i]!.length) written -= parts[i++]!.length;
  if (i === parts.length) return [];
  const rest = parts.slice(i);
  rest[0] = rest[0]!.subarray(written);
  return rest;
}

export class DiskTier {
  /** in LRU order: first = least recently used */
  private readonly index = new Map<string, DiskEntry>();
  private readonly pending = new Map<string, PendingWrite>();
  private readonly inFlight = new Set<Promise<void>>();
  private used = 0;
  private nextSeq = 1;
  /** writes not yet finished, payload release included */
  private writes = 0;
  /** hears each key whose file (or write in flight) this tier let go of */
  onDrop: ((key: string) => void) | undefined;

  constructor(
    readonly dir: string,
    readonly maxBytes: number,
    private readonly log: Logger,
    private readonly onEvict: () => void = () => {},
  ) {}

  stats(): DiskStats {
    return {
      objects: this.index.size,
      usedBytes: this.used,
      maxBytes: this.maxBytes,
      writesInFlight: this.writes,
    };
  }

  /** Creates the folder, deletes leftover temp files and re-indexes complete objects (oldest seq first). */
  async open(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    const found: DiskEntry[] = [];
    for (const name of await readdir(this.dir)) {
      const path = join(this.dir, name);
      if (name.endsWith(".kv.tmp")) {
        await unlink(path).catch(() => {});
        this.log.info({ file: name }, "removed an unfinished disk write from a previous run");
        continue;
      }
      if (!name.endsWith(".kv")) continue;
      const entry = await this.readEntry(name).catch(() => undefined);
      if (!entry) {
        await unlink(path).catch(() => {});
        this.log.warn({ file: name }, "removed an unreadable or incomplete object file");
        continue;
      }
      found.push(entry);
    }
    found.sort((a, b) => a.seq - b.seq);
    for (const e of found) {
      const older = this.index.get(e.key);
      if (older) this.drop(older);
      this.index.set(e.key, e);
      this.used += e.fileBytes;
      this.nextSeq = Math.max(this.nextSeq, e.seq + 1);
    }
    this.makeRoom(0);
    this.log.info({ objects: this.index.size, bytes: this.used, dir: this.dir }, "disk tier indexed");
  }

  private async readEntry(name: string): Promise<DiskEntry | undefined> {
    const path = join(this.dir, name);
    const fh = await open(path, "r");
    try {
      const head = Buffer.alloc(FILE_HEADER_BYTES + MAX_KEY_BYTES);
      const { bytesRead } = await fh.read(head, 0, head.length, 0);
      if (bytesRead < FILE_HEADER_BYTES || head.readUInt32LE(0) !== MAGIC || head.readUInt32LE(4) !== VERSION)
        return undefined;
      const keyLen = head.readUInt32LE(44);
      const length = head.readInt32LE(16);
      if (keyLen === 0 || keyLen > MAX_KEY_BYTES || length < 0 || bytesRead < FILE_HEADER_BYTES + keyLen)
        return undefined;
      const fileBytes = FILE_HEADER_BYTES + keyLen + length;
      if ((await fh.stat()).size !== fileBytes) return undefined;
      return {
        key: head.toString("latin1", FILE_HEADER_BYTES, FILE_HEADER_BYTES + keyLen),
        file: name,
        seq: head.readUIntLE(8, 6),
        fileBytes,
        length,
        meta: {
          fmt: head.readInt32LE(20),
          dtype: head.readInt32LE(24),
          shape: [head.readInt32LE(28), head.readInt32LE(32), head.readInt32LE(36), head.readInt32LE(40)],
        },
      };
    } finally {
      await fh.close();
    }
  }

  /** An object still being written is served from its in-memory payload. */
  lookup(key: string): { pending: StoredObject } | { entry: DiskEntry } | undefined {
    const p = this.pending.get(key);
    if (p) return { pending: p.obj };
    const entry = this.index.get(key);
    if (!entry) return undefined;
    this.index.delete(key);
    this.index.set(key, entry);
    return { entry };
  }

  has(key: string): boolean {
    return this.pending.has(key) || this.index.has(key);
  }

  keys(): string[] {
    return [...this.pending.keys(), ...this.index.keys()];
  }

  /** Reads an indexed object's payload into one Buffer; undefined when the file went away meanwhile. */
  async read(entry: DiskEntry): Promise<Buffer | undefined> {
    const payload = Buffer.allocUnsafe(entry.length);
    let fh;
    try {
      fh = await open(join(this.dir, entry.file), "r");
    } catch (_err) {
      return undefined;
    }
    try {
      let done = 0;
      const base = FILE_HEADER_BYTES + entry.key.length;
      while (done < entry.length) {
        const { bytesRead } = await fh.read(payload, done, entry.length - done, base + done);
        if (bytesRead === 0) return undefined;
        done += bytesRead;
      }
      return payload;
    } catch (err) {
      this.log.error({ err, file: entry.file }, "disk read failed");
      return undefined;
    } finally {
      await fh.close().catch(() => {});
    }
  }

  /** A newer PUT (or a delete) supersedes whatever the disk holds for `key`. */
  invalidate(key: string): void {
    const wasPending = this.pending.delete(key);
    const entry = this.index.get(key);
    if (entry) this.drop(entry);
    else if (wasPending) this.onDrop?.(key);
  }

  /**
   * Takes an object evicted from memory. Returns false when it cannot fit beside writes still in
   * flight. `released` is called when the payload is no longer needed in RAM.
   */
  offer(obj: StoredObject, released: () => void): boolean {
    const fileBytes = FILE_HEADER_BYTES + obj.key.length + obj.payload.length;
    if (obj.key.length > MAX_KEY_BYTES || !this.makeRoom(fileBytes)) return false;
    this.invalidate(obj.key);
    const seq = this.nextSeq++;
    const rec: PendingWrite = { obj, seq };
    this.pending.set(obj.key, rec);
    this.used += fileBytes;
    this.writes++;
    const p = this.write(rec, fileBytes).finally(() => {
      this.inFlight.delete(p);
      this.writes--;
      released();
    });
    this.inFlight.add(p);
    return true;
  }

  private async write(rec: PendingWrite, fileBytes: number): Promise<void> {
    const file = objectFileName(rec.seq);
    const tmp = join(this.dir, `${file}.tmp`);
    const { obj } = rec;
    let ok = false;
    try {
      const fh = await open(tmp, "wx");
      try {
        let parts = objectFileParts(rec.seq, obj);
        // one writev for header, key and every payload chunk (libuv splits it at IOV_MAX)
        let pos = 0;
        while (parts.length > 0) {
          const { bytesWritten } = await fh.writev(parts, pos);
          if (bytesWritten <= 0) throw new InvariantError("disk writev wrote nothing");
          pos += bytesWritten;
          parts = unwritten(parts, bytesWritten);
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, join(this.dir, file));
      ok = true;
    } catch (err) {
      this.log.error({ err, key: obj.key }, "disk write failed; object dropped");
      await unlink(tmp).catch(() => {});
    }
    if (this.pending.get(obj.key) === rec) {
      this.pending.delete(obj.key);
      if (ok) {
        this.index.set(obj.key, {
          key: obj.key,
          file,
          seq: rec.seq,
          fileBytes,
          length: obj.payload.length,
          meta: obj.meta,
        });
        return;
      }
    } else if (ok) {
      // superseded while it was being written: the newer version lives elsewhere
      await unlink(join(this.dir, file)).catch(() => {});
    }
    this.used -= fileBytes;
  }

  /** Evicts least recently used files until `bytes` more fit; false if writes in flight leave no room. */
  private makeRoom(bytes: number): boolean {
    if (bytes > this.maxBytes) return false;
    while (this.used + bytes > this.maxBytes) {
      const first = this.index.values().next();
      if (first.done) return false;
      this.drop(first.value);
      this.onEvict();
    }
    return true;
  }

  private drop(entry: DiskEntry): void {
    if (this.index.get(entry.key) === entry) this.index.delete(entry.key);
    this.onDrop?.(entry.key);
    this.used -= entry.fileBytes;
    const path = join(this.dir, entry.file);
    const p = unlink(path)
      .catch(() => {})
      .finally(() => this.inFlight.delete(p));
    this.inFlight.add(p);
  }

  /** Waits for every write and unlink in flight (shutdown). */
  async flush(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    // make the renames themselves durable
    const dh = await open(this.dir, "r").catch(() => undefined);
    if (dh)
      await dh
        .sync()
        .catch(() => {})
        .finally(() => dh.close());
  }
}

/** Size of a folder's `.kv` files, for tests and the CLI's startup line. */
export async function diskBytes(dir: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(dir))
    if (name.endsWith(".kv")) total += (await stat(join(dir, name))).size;
  return total;
}
