// Byte-level BPE vocabularies as flat byte tables, so decode is one copy per token and never throws.
// The GPT-2 byte<->unicode map is what HF's ByteLevel decoder and `convert_ids_to_tokens` use; every
// family here (Llama 3, cl100k, r50k) is byte-level, so the same map gives HF-style token strings.

/** byte -> printable char (GPT-2's bytes_to_unicode) */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const map = new Array<string>(256);
  for (const b of printable) map[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (map[b] === undefined) map[b] = String.fromCharCode(256 + n++);
  }
  return map;
})();

const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/** bytes of a byte-level token string ("Ġworld" -> " world"); null when a char is outside the map */
export function byteLevelToBytes(token: string): Uint8Array | null {
  const out = new Uint8Array(token.length);
  for (let i = 0; i < token.length; i++) {
    const b = CHAR_TO_BYTE.get(token[i]!);
    if (b === undefined) return null;
    out[i] = b;
  }
  return out;
}

export function bytesToByteLevel(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i++) s += BYTE_TO_CHAR[bytes[i]!];
  return s;
}

export const TOKEN_UNKNOWN = 0;
export const TOKEN_NORMAL = 1;
/** an added token that HF marks special: dropped by decode(skip_special_tokens=True) */
export const TOKEN_SPECIAL = 2;
/** an added token that is not special (Qwen's <think>, <tool_call>): kept by skip_special_tokens */
export const TOKEN_ADDED = 3;

export interface AddedToken {
  id: number;
  content: string;
  special: boolean;
}

const utf8 = new TextEncoder();

/** Every id below `size` maps to its bytes (empty for unknown ids) and a kind. */
export class VocabTable {
  readonly size: number;
  private readonly bytes: Uint8Array;
  /** offsets[id]..offsets[id+1] are the bytes of id */
  private readonly offsets: Int32Array;
  private readonly kinds: Uint8Array;
  private readonly decoder = new TextDecoder("utf-8");

  private constructor(size: number, bytes: Uint8Array, offsets: Int32Array, kinds: Uint8Array) {
    this.size = size;
    this.bytes = bytes;
    this.offsets = offsets;
    this.kinds = kinds;
  }

  /** tokenBytes(id) gives the bytes of an ordinary token or null for a hole */
  static build(
    size: number,
    ordinaryCount: number,
    tokenBytes: (id: number) => Uint8Array | null,
    added: readonly AddedToken[],
  ): VocabTable {
    const parts = new Array<Uint8Array | null>(size).fill(null);
    const kinds = new Uint8Array(size);
    for (let id = 0; id < ordinaryCount && id < size; id++) {
      const b = tokenBytes(id);
      if (b) {
        parts[id] = b;
        kinds[id] = TOKEN_NORMAL;
      }
    }
    for (const t of added) {
      if (t.id >= size) continue;
      parts[t.id] = utf8.encode(t.content);
      kinds[t.id] = t.special ? TOKEN_SPECIAL : TOKEN_ADDED;
    }
    let total = 0;
    for (const p of parts) total += p ? p.length : 0;
    const bytes = new Uint8Array(total);
    const offsets = new Int32Array(size + 1);
    let at = 0;
    for (let id = 0; id < size; id++) {
      offsets[id] = at;
      const p = parts[id];
      if (p) {
        bytes.set(p, at);
        at += p.length;
      }
    }
    offsets[size] = at;
    return new VocabTable(size, bytes, offsets, kinds);
  }

  kind(id: number): number {
    return Number.isInteger(id) && id >= 0 && id < this.size ? this.kinds[id]! : TOKEN_UNKNOWN;
  }

  decode(ids: readonly number[], skipSpecialTokens: boolean): string {
    let total = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const k = this.kind(id);
      if (k === TOKEN_UNKNOWN || (skipSpecialTokens && k === TOKEN_SPECIAL)) continue;
      total += this.offsets[id + 1]! - this.offsets[id]!;
    }
    const out = new Uint8Array(total);
    let at = 0;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i]!;
      const k = this.kind(id);
      if (k === TOKEN_UNKNOWN || (skipSpecialTokens && k === TOKEN_SPECIAL)) continue;
      const start = this.offsets[id]!;
      const end = this.offsets[id + 1]!;
      out.set(this.bytes.subarray(start, end), at);
      at += end - start;
    }
    // Invalid UTF-8 (a split multi-byte char) becomes U+FFFD, as HF's lossy decode does.
    return this.decoder.decode(out);
  }

  /** HF-style token string: byte-level chars for ordinary tokens, the content for added ones */
  tokenString(id: number): string {
    const k = this.kind(id);
    if (k === TOKEN_UNKNOWN) return "";
    const b = this.bytes.subarray(this.offsets[id]!, this.offsets[id + 1]!);
    return k === TOKEN_NORMAL ? bytesToByteLevel(b) : this.decoder.decode(b);
  }
}
