// vLLM's KV-event payload codec: the msgspec msgpack bytes of a KVEventBatch, both ways. The msgpack
// primitives are in msgpack-write.ts and msgpack-read.ts; this file knows vLLM's schema.
//
// Encoding reproduces msgspec byte for byte in either event layout (KvEventLayout): the batch is an
// `array_like` struct; each event is a tagged array (vLLM ≤ 0.23) or a tagged map (vLLM ≥ 0.24), and
// `omit_defaults` drops fields equal to their default — trailing ones in the array form, any one in the map
// form. Fields without a default (lora_id, medium, lora_name) are always written, nil when null.
//
// Decoding is schema-directed (no generic msgpack tree, then no second pass): it reads straight into
// typed events, accepts every shape vLLM has shipped (short arrays, extra trailing fields, events as
// maps with a "type" key, hashes as uint64 ints or raw digest bytes) and rejects anything else with a
// DecodeError that says what was wrong and at which byte offset.
import type {
  AllBlocksCleared,
  BlockRemoved,
  BlockStored,
  KvEvent,
  KvEventBatch,
  KvEventLayout,
  MsgValue,
} from "./events.js";
import { DecodeError, Reader } from "./msgpack-read.js";
import { Writer } from "./msgpack-write.js";

export { DecodeError };

/** Counters a caller may pass to decodeBatch to learn about skipped, forward-compatible content. */
export interface DecodeStats {
  /** events whose type this decoder does not know (newer vLLM); skipped, not fatal */
  unknownEvents: number;
}

// ---------------------------------------------------------------------------------------------
// Encoding

const isSet = <T>(x: T | null | undefined): x is T => x !== null && x !== undefined;

function writeParent(w: Writer, parent: bigint | null): void {
  if (parent === null || parent === undefined) w.nil();
  else w.u64(parent);
}

function writeTokens(w: Writer, tokens: readonly number[]): void {
  w.arrayHeader(tokens.length);
  for (const t of tokens) w.int(t);
}

function writeExtraKeys(w: Writer, keys: readonly (MsgValue[] | null)[]): void {
  w.arrayHeader(keys.length);
  for (const k of keys) w.value(k);
}

/** The optional tail of a BlockStored after lora_id, in field order: [medium, lora_name, extra_keys, group_idx, kind, window, locality]. */
function storedTail(ev: BlockStored): unknown[] {
  return [
    ev.medium,
    ev.loraName,
    ev.extraKeys,
    ev.groupIdx,
    ev.kvCacheSpecKind,
    ev.kvCacheSpecSlidingWindow,
    ev.locality,
  ];
}

function encodeArrayEvent(w: Writer, ev: KvEvent): void {
  switch (ev.type) {
    case "BlockStored": {
      // omit_defaults on an array_like struct drops trailing default fields: what is past the last set
      // field is left out (the v0.10 shape had no medium; v0.11 no lora_name; v0.20 added the rest)
      const tail = storedTail(ev);
      let n = tail.length;
      while (n > 0 && !isSet(tail[n - 1])) n--;
      w.arrayHeader(6 + n);
      w.str("BlockStored");
      w.hashes(ev.blockHashes);
      writeParent(w, ev.parentBlockHash);
      writeTokens(w, ev.tokenIds);
      w.int(ev.blockSize);
      w.optInt(ev.loraId);
      if (n > 0) w.optStr(ev.medium);
      if (n > 1) w.optStr(ev.loraName);
      if (n > 2) {
        if (isSet(ev.extraKeys)) writeExtraKeys(w, ev.extraKeys);
        else w.nil();
      }
      if (n > 3) w.optInt(ev.groupIdx);
      if (n > 4) w.optStr(ev.kvCacheSpecKind);
      if (n > 5) w.optInt(ev.kvCacheSpecSlidingWindow);
      if (n > 6) w.optStr(ev.locality);
      return;
    }
    case "BlockRemoved": {
      const tail = [ev.medium, ev.groupIdx, ev.locality];
      let n = tail.length;
      while (n > 0 && !isSet(tail[n - 1])) n--;
      w.arrayHeader(2 + n);
      w.str("BlockRemoved");
      w.hashes(ev.blockHashes);
      if (n > 0) w.optStr(ev.medium);
      if (n > 1) w.optInt(ev.groupIdx);
      if (n > 2) w.optStr(ev.locality);
      return;
    }
    case "AllBlocksCleared":
      w.arrayHeader(1);
      w.str("AllBlocksCleared");
      return;
    default:
      throw new TypeError(`unknown KV event type ${String((ev as { type: unknown }).type)}`);
  }
}

function encodeMapEvent(w: Writer, ev: KvEvent): void {
  switch (ev.type) {
    case "BlockStored": {
      // the eight fields without a default, then each defaulted one that is set, in declaration order
      const n =
        8 +
        (isSet(ev.extraKeys) ? 1 : 0) +
        (isSet(ev.groupIdx) ? 1 : 0) +
        (isSet(ev.kvCacheSpecKind) ? 1 : 0) +
        (isSet(ev.kvCacheSpecSlidingWindow) ? 1 : 0) +
        (isSet(ev.locality) ? 1 : 0);
      w.mapHeader(n);
      w.str("type");
      w.str("BlockStored");
      w.str("block_hashes");
      w.hashes(ev.blockHashes);
      w.str("parent_block_hash");
      writeParent(w, ev.parentBlockHash);
      w.str("token_ids");
      writeTokens(w, ev.tokenIds);
      w.str("block_size");
      w.int(ev.blockSize);
      w.str("lora_id");
      w.optInt(ev.loraId);
      w.str("medium");
      w.optStr(ev.medium);
      w.str("lora_name");
      w.optStr(ev.loraName);
      if (isSet(ev.extraKeys)) {
        w.str("extra_keys");
        writeExtraKeys(w, ev.extraKeys);
      }
      if (isSet(ev.groupIdx)) {
        w.str("group_idx");
        w.int(ev.groupIdx);
      }
      if (isSet(ev.kvCacheSpecKind)) {
        w.str("kv_cache_spec_kind");
        w.str(ev.kvCacheSpecKind);
      }
      if (isSet(ev.kvCacheSpecSlidingWindow)) {
        w.str("kv_cache_spec_sliding_window");
        w.int(ev.kvCacheSpecSlidingWindow);
      }
      if (isSet(ev.locality)) {
        w.str("locality");
        w.str(ev.locality);
      }
      return;
    }
    case "BlockRemoved":
      w.mapHeader(3 + (isSet(ev.groupIdx) ? 1 : 0) + (isSet(ev.locality) ? 1 : 0));
      w.str("type");
      w.str("BlockRemoved");
      w.str("block_hashes");
      w.hashes(ev.blockHashes);
      w.str("medium");
      w.optStr(ev.medium);
      if (isSet(ev.groupIdx)) {
        w.str("group_idx");
        w.int(ev.groupIdx);
      }
      if (isSet(ev.locality)) {
        w.str("locality");
        w.str(ev.locality);
      }
      return;
    case "AllBlocksCleared":
      w.mapHeader(1);
      w.str("type");
      w.str("AllBlocksCleared");
      return;
    default:
      throw new TypeError(`unknown KV event type ${String((ev as { type: unknown }).type)}`);
  }
}

// process-wide: one scratch writer, reused by every encoder in the process (encoding is synchronous)
const scratch = { writer: undefined as Writer | undefined };

/**
 * The msgspec msgpack bytes vLLM publishes for this batch, with events in `layout` (the tagged arrays of
 * vLLM ≤ 0.23 unless told otherwise). The returned Buffer is the caller's.
 */
export function encodeBatch(batch: KvEventBatch, layout: KvEventLayout = "array"): Buffer {
  // One scratch writer, reused: encoding allocates only the returned copy.
  const w = (scratch.writer ??= new Writer(64 * 1024));
  w.pos = 0;
  const hasRank = batch.dataParallelRank !== null && batch.dataParallelRank !== undefined;
  w.arrayHeader(hasRank ? 3 : 2);
  w.float64(batch.ts);
  w.arrayHeader(batch.events.length);
  const encodeEvent = layout === "map" ? encodeMapEvent : encodeArrayEvent;
  for (const ev of batch.events) encodeEvent(w, ev);
  if (hasRank) w.int(batch.dataParallelRank as number);
  const out = Buffer.from(w.buf.subarray(0, w.pos));
  // Do not pin a huge scratch buffer after one outsized batch.
  if (w.buf.length > 4 * 1024 * 1024) scratch.writer = undefined;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** A parent of 0 is no parent: vLLM's hash_block_tokens replaces any falsy parent with NONE_HASH. */
function readParent(r: Reader, what: string): bigint | null {
  const h = r.optHash(what);
  return h === 0n ? null : h;
}

/** extra_keys is a list with one tuple (or None) per block; anything else is left out, not fatal. */
function readExtraKeys(r: Reader): (MsgValue[] | null)[] | undefined {
  const v = r.tryValue("extra_keys");
  if (!Array.isArray(v)) return undefined;
  for (const k of v) if (k !== null && !Array.isArray(k)) return undefined;
  return v as (MsgValue[] | null)[];
}

/** Sets an optional field only when the wire carried a value: absent and nil both mean "not set". */
function setIf<T, K extends keyof T>(ev: T, key: K, v: T[K] | null | undefined): void {
  if (v !== null && v !== undefined) ev[key] = v;
}

/** Reads the fields of a tagged array event after its tag; `n` is the array length including the tag. */
function eventFromArray(r: Reader, tag: string, n: number, stats: DecodeStats | undefined): KvEvent | null {
  let left = n - 1;
  switch (tag) {
    case "BlockStored": {
      if (left < 4) r.fail(`BlockStored needs at least 4 fields, has ${left}`);
      const ev: BlockStored = {
        type: "BlockStored",
        blockHashes: r.hashes("BlockStored.block_hashes"),
        parentBlockHash: readParent(r, "BlockStored.parent_block_hash"),
        tokenIds: r.ints("BlockStored.token_ids"),
        blockSize: r.int("BlockStored.block_size"),
        loraId: null,
        medium: null,
      };
      left -= 4;
      const more = () => left-- > 0;
      if (more()) ev.loraId = r.optInt("BlockStored.lora_id");
      if (more()) ev.medium = r.optStr("BlockStored.medium");
      if (more()) ev.loraName = r.optStr("BlockStored.lora_name");
      if (more()) setIf(ev, "extraKeys", readExtraKeys(r));
      if (more()) setIf(ev, "groupIdx", r.optInt("BlockStored.group_idx"));
      if (more()) setIf(ev, "kvCacheSpecKind", r.optStr("BlockStored.kv_cache_spec_kind"));
      if (more()) setIf(ev, "kvCacheSpecSlidingWindow", r.optInt("BlockStored.kv_cache_spec_sliding_window"));
      if (more()) setIf(ev, "locality", r.optStr("BlockStored.locality"));
      while (left-- > 0) r.skip();
      return ev;
    }
    case "BlockRemoved": {
      if (left < 1) r.fail("BlockRemoved needs block_hashes");
      const ev: BlockRemoved = {
        type: "BlockRemoved",
        blockHashes: r.hashes("BlockRemoved.block_hashes"),
        medium: null,
      };
      left--;
      const more = () => left-- > 0;
      if (more()) ev.medium = r.optStr("BlockRemoved.medium");
      if (more()) setIf(ev, "groupIdx", r.optInt("BlockRemoved.group_idx"));
      if (more()) setIf(ev, "locality", r.optStr("BlockRemoved.locality"));
      while (left-- > 0) r.skip();
      return ev;
    }
    case "AllBlocksCleared":
      while (left-- > 0) r.skip();
      return { type: "AllBlocksCleared" } satisfies AllBlocksCleared;
    default:
      while (left-- > 0) r.skip();
      if (stats) stats.unknownEvents++;
      return null;
  }
}

/** The map form of vLLM ≥ 0.24: {"type": "BlockStored", "block_hashes": [...], ...}. */
function eventFromMap(r: Reader, n: number, stats: DecodeStats | undefined): KvEvent | null {
  let type: string | undefined;
  let blockHashes: bigint[] | undefined;
  let parent: bigint | null = null;
  let tokenIds: number[] | undefined;
  let blockSize: number | undefined;
  let loraId: number | null = null;
  let medium: string | null = null;
  let loraName: string | null | undefined;
  let extraKeys: (MsgValue[] | null)[] | undefined;
  let groupIdx: number | null = null;
  let kind: string | null = null;
  let window: number | null = null;
  let locality: string | null = null;
  for (let i = 0; i < n; i++) {
    const key = r.str("event map key");
    switch (key) {
      case "type":
        type = r.str("event type");
        break;
      case "block_hashes":
        blockHashes = r.hashes("block_hashes");
        break;
      case "parent_block_hash":
        parent = readParent(r, "parent_block_hash");
        break;
      case "token_ids":
        tokenIds = r.ints("token_ids");
        break;
      case "block_size":
        blockSize = r.int("block_size");
        break;
      case "lora_id":
        loraId = r.optInt("lora_id");
        break;
      case "medium":
        medium = r.optStr("medium");
        break;
      case "lora_name":
        loraName = r.optStr("lora_name");
        break;
      case "extra_keys":
        extraKeys = readExtraKeys(r);
        break;
      case "group_idx":
        groupIdx = r.optInt("group_idx");
        break;
      case "kv_cache_spec_kind":
        kind = r.optStr("kv_cache_spec_kind");
        break;
      case "kv_cache_spec_sliding_window":
        window = r.optInt("kv_cache_spec_sliding_window");
        break;
      case "locality":
        locality = r.optStr("locality");
        break;
      default:
        r.skip();
    }
  }
  switch (type) {
    case "BlockStored": {
      if (!blockHashes || !tokenIds || blockSize === undefined)
        r.fail("BlockStored map needs block_hashes, token_ids and block_size");
      const ev: BlockStored = {
        type: "BlockStored",
        blockHashes,
        parentBlockHash: parent,
        tokenIds,
        blockSize,
        loraId,
        medium,
      };
      if (loraName !== undefined) ev.loraName = loraName;
      setIf(ev, "extraKeys", extraKeys);
      setIf(ev, "groupIdx", groupIdx);
      setIf(ev, "kvCacheSpecKind", kind);
      setIf(ev, "kvCacheSpecSlidingWindow", window);
      setIf(ev, "locality", locality);
      return ev;
    }
    case "BlockRemoved": {
      if (!blockHashes) r.fail("BlockRemoved map needs block_hashes");
      const ev: BlockRemoved = { type: "BlockRemoved", blockHashes, medium };
      setIf(ev, "groupIdx", groupIdx);
      setIf(ev, "locality", locality);
      return ev;
    }
    case "AllBlocksCleared":
      return { type: "AllBlocksCleared" } satisfies AllBlocksCleared;
    case undefined:
      return r.fail('event map without a "type" key');
    default:
      if (stats) stats.unknownEvents++;
      return null;
  }
}

function readEvent(r: Reader, stats: DecodeStats | undefined): KvEvent | null {
  const m = r.mapLenOrNot();
  if (m >= 0) return eventFromMap(r, m, stats);
  const n = r.arrayLen("event");
  if (n === 0) r.fail("empty event array (no type tag)");
  const tag = r.str("event type tag");
  return eventFromArray(r, tag, n, stats);
}

function readEvents(r: Reader, stats: DecodeStats | undefined): KvEvent[] {
  const n = r.arrayLen("events");
  const events: KvEvent[] = [];
  for (let i = 0; i < n; i++) {
    const ev = readEvent(r, stats);
    if (ev) events.push(ev);
  }
  return events;
}

/**
 * Decodes one ZMQ payload frame into a typed batch. Throws DecodeError (and nothing else) on input
 * that is not a KV event batch; never reads past the buffer, never allocates more than the input
 * could describe.
 */
export function decodeBatch(buf: Uint8Array, stats?: DecodeStats): KvEventBatch {
  const r: Reader = new Reader(
    Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength),
  );
  let batch: KvEventBatch;
  const m = r.mapLenOrNot();
  if (m >= 0) {
    let ts: number | undefined;
    let events: KvEvent[] | undefined;
    let rank: number | null = null;
    for (let i = 0; i < m; i++) {
      const key = r.str("batch map key");
      if (key === "ts") ts = r.num("ts");
      else if (key === "events") events = readEvents(r, stats);
      else if (key === "data_parallel_rank") rank = r.optInt("data_parallel_rank");
      else r.skip();
    }
    if (ts === undefined || events === undefined) r.fail("batch map needs ts and events");
    batch = { ts, events, dataParallelRank: rank };
  } else {
    const n = r.arrayLen("batch");
    if (n < 2) r.fail(`batch needs [ts, events], has ${n} element(s)`);
    const ts = r.num("ts");
    const events = readEvents(r, stats);
    const rank = n > 2 ? r.optInt("data_parallel_rank") : null;
    for (let i = 3; i < n; i++) r.skip();
    batch = { ts, events, dataParallelRank: rank };
  }
  if (r.pos !== buf.length) r.fail(`${buf.length - r.pos} trailing byte(s) after the batch`);
  return batch;
}
