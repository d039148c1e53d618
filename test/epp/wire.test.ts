// The endpoint picker's protobuf boundary on bytes a peer could send: truncations, lengths past the
// end, metadata nested past the limit, header floods and unknown fields. Interop with the published
// protos is proven in epp.test.ts with Envoy's Go bindings; this file is about refusing bad input.
import { test } from "node:test";
import assert from "node:assert/strict";
import { decodeProcessingRequest, decodeHealthCheckRequest } from "../../src/epp/messages.js";
import { ProtoWriter, WireError } from "../../src/epp/wire.js";

/** ProcessingRequest { request_headers = 2 { headers = 1 { headers = 1 { key = 1; raw_value = 3 } } } } */
function headersMessage(n: number): Buffer {
  return new ProtoWriter()
    .message(2, (hh) =>
      hh.message(1, (hm) => {
        for (let i = 0; i < n; i++) hm.message(1, (h) => h.string(1, `x-h${i}`).bytes(3, Buffer.from("v")));
      }),
    )
    .finish();
}

test("a well-formed message decodes, unknown fields (attributes, future ones) skipped", () => {
  const buf = Buffer.concat([
    headersMessage(2),
    // attributes = 9 (map<string, Struct>) and an unknown varint field 99: both skipped
    new ProtoWriter()
      .message(9, (e) => e.string(1, "k"))
      .varint(99, 7)
      .finish(),
  ]);
  const m = decodeProcessingRequest(buf);
  assert.equal(m.phase, "requestHeaders");
  assert.deepEqual(
    m.headers.map((h) => [h.key, h.value]),
    [
      ["x-h0", "v"],
      ["x-h1", "v"],
    ],
  );
});

test("truncated and overlong input is refused with WireError, never read past the buffer", () => {
  const good = headersMessage(1);
  for (let cut = 1; cut < good.length; cut++)
    assert.throws(() => decodeProcessingRequest(good.subarray(0, cut)), WireError, `cut at ${cut}`);
  // a length that claims more bytes than there are
  assert.throws(() => decodeProcessingRequest(Buffer.from([0x12, 0x7f, 0x0a])), WireError);
  // an 11-byte varint
  assert.throws(() => decodeProcessingRequest(Buffer.from([0x50, ...Array(10).fill(0xff), 0x01])), WireError);
  // field number 0, and a group wire type
  assert.throws(() => decodeProcessingRequest(Buffer.from([0x02, 0x00])), WireError);
  assert.throws(() => decodeProcessingRequest(Buffer.from([0x0b])), WireError);
  assert.throws(() => decodeHealthCheckRequest(Buffer.from([0x0a, 0x05, 0x61])), WireError);
});

test("a header flood and metadata nested past the limit are refused", () => {
  assert.throws(() => decodeProcessingRequest(headersMessage(1025)), /more than 1024 headers/);
  // metadata_context = 8 { filter_metadata = 1 { key = 1; value = 2 (Struct) } } with Values nested 40 deep
  const nested = (w: ProtoWriter, depth: number): void => {
    // Struct { fields = 1 { key = 1; value = 2 { struct_value = 5 { ... } } } }
    w.message(1, (e) => {
      e.string(1, "k");
      e.message(2, (v) => (depth > 0 ? v.message(5, (s) => nested(s, depth - 1)) : v.string(3, "leaf")));
    });
  };
  const md = (depth: number) =>
    new ProtoWriter()
      .message(8, (m) =>
        m.message(1, (e) => {
          e.string(1, "ns");
          e.message(2, (s) => nested(s, depth));
        }),
      )
      .finish();
  assert.equal(decodeProcessingRequest(md(3)).metadata.get("ns")?.k !== undefined, true);
  assert.throws(() => decodeProcessingRequest(md(40)), /nested too deeply/);
});
