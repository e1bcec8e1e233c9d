/**
 * Mutation fuzzing of orrery.v1.GenerateRequest: valid requests, encoded with protobufjs from the
 * public .proto, then mutated field-wise (wrong wire types, out-of-range numbers, huge, empty and
 * control-character strings, unknown enum values, oneof conflicts, NaN/Inf floats, negative and
 * 2^64 seeds, unknown and duplicated fields) or byte-wise (bit flips, truncation, splicing,
 * insertion, noise). Pure: a seeded rng in, bytes out, so a failing case is replayed by its index.
 */
import protobuf from 'protobufjs';
import { imageServiceProtoPath } from '../../services/common/grpc-protos.js';

/** Wire types of the protobuf encoding (0 varint, 1 fixed64, 2 length-delimited, 5 fixed32). */
type WireType = 0 | 1 | 2 | 5;

/** One field as it sits on the wire: number, wire type and the encoded value (without the tag). */
interface RawField {
  readonly no: number;
  readonly wire: WireType;
  readonly payload: Uint8Array;
}

/** One fuzz case: the bytes sent and how they were made (for the report and for replaying). */
export interface FuzzCase {
  readonly index: number;
  readonly mutation: string;
  readonly bytes: Buffer;
}

let requestType: protobuf.Type | undefined;

/** orrery.v1.GenerateRequest, loaded with protobufjs from the public .proto file. */
export function generateRequestType(): protobuf.Type {
  requestType ??= protobuf.loadSync(imageServiceProtoPath()).lookupType('orrery.v1.GenerateRequest');
  return requestType;
}

/** A tiny PNG signature plus a header chunk: passes the router's magic-byte check (the synthetic stage never decodes it). */
const PNG_LIKE = Buffer.from('89504e470d0a1a0a0000000d49484452000000080000000808020000004b6d29dc', 'hex');

/** Valid requests for a cluster serving model `syn-a` on deployment (and pipeline) `synthetic`. */
export const VALID_REQUESTS: ReadonlyArray<Record<string, unknown>> = [
  { prompt: 'a ringed planet', model_id: 'syn-a', seed: 42 },
  { planet: { color: 'deep blue', atmosphere: 'frosted cloudy zones', moons: 'no moons', sky: 'distant stars', extras: ['rings'] }, model_id: 'syn-a', num_images: 2 },
  { prompt: 'a planet', negative_prompt: 'blurry', aspect: '21:9', steps: 4, guidance_scale: 3.5, pipeline: 'synthetic', output_format: 2 },
  { prompt: 'a planet', width: 512, height: 256, strength: 0.4, init_image: PNG_LIKE, request_id: 'fuzz-1', timeout_ms: 30_000 },
];

const FIELDS = {
  model_id: 1, prompt: 2, planet: 3, negative_prompt: 4, seed: 5, num_images: 6, steps: 7, guidance_scale: 8,
  width: 9, height: 10, aspect: 11, pipeline: 12, strength: 13, init_image: 14, output_format: 15, timeout_ms: 16, request_id: 17,
} as const;
const STRING_FIELDS = [1, 2, 4, 11, 12, 17];
const VARINT_FIELDS = [5, 6, 7, 9, 10, 15, 16];
const FLOAT_FIELDS = [8, 13];
const ALL_FIELDS = Object.values(FIELDS);

/** Field names a non-INTERNAL answer may start with (`<field>: why`). */
export const FIELD_NAME = new RegExp(`^(${Object.keys(FIELDS).join('|')}|planet\\.(color|atmosphere|moons|sky|extras(\\[\\d+\\])?))(:| )`);

function varint(v: bigint): Uint8Array {
  const out: number[] = [];
  // Negative numbers as protobuf encodes int64 (10 bytes); values past 2^64 as longer varints.
  let x = v < 0n ? BigInt.asUintN(64, v) : v;
  do {
    let b = Number(x & 0x7fn);
    x >>= 7n;
    if (x > 0n) b |= 0x80;
    out.push(b);
  } while (x > 0n);
  return Uint8Array.from(out);
}

function float32(v: number): Uint8Array {
  const b = Buffer.alloc(4);
  b.writeFloatLE(v);
  return b;
}

const utf8 = (s: string): Uint8Array => Buffer.from(s, 'utf8');

/** Splits an encoded message into its raw fields (the encoding protobufjs produced is valid). */
function rawFields(bytes: Uint8Array): RawField[] {
  const r = protobuf.Reader.create(bytes);
  const out: RawField[] = [];
  while (r.pos < r.len) {
    const tag = r.uint32();
    const wire = (tag & 7) as WireType;
    let start = r.pos;
    if (wire === 2) {
      const len = r.uint32();
      start = r.pos;
      r.skip(len);
    } else r.skipType(wire);
    out.push({ no: tag >>> 3, wire, payload: bytes.slice(start, r.pos) });
  }
  return out;
}

function encodeFields(fields: readonly RawField[]): Buffer {
  const parts: Uint8Array[] = [];
  for (const f of fields) {
    parts.push(varint(BigInt(f.no) * 8n + BigInt(f.wire)));
    if (f.wire === 2) parts.push(varint(BigInt(f.payload.length)));
    parts.push(f.payload);
  }
  return Buffer.concat(parts);
}

const NUMBERS: bigint[] = [0n, 1n, 7n, 8n, 63n, 64n, 65n, 200n, 201n, 1000n, 1001n, 8192n, 8193n, 2n ** 31n - 1n, 2n ** 31n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n, 2n ** 70n, -1n, -(2n ** 63n)];
const FLOATS = [Number.NaN, Infinity, -Infinity, -0, -1, 0, 0.5, 1, 1.0000001, 50, 50.001, 1e-45, 3.4e38];
const ENUMS: bigint[] = [0n, 1n, 2n, 3n, 4n, 99n, 2n ** 31n - 1n, -1n];
const STRINGS: string[] = [
  '', ' ', '\u0000', 'a\u0001b', '\t\n\r', 'x'.repeat(2000), 'x'.repeat(2001), 'é'.repeat(3000), '🪐'.repeat(700), '../../etc/passwd', '/abs',
  'syn-a', 'syn-a+lora', 'syn-a+lora@v', 'syn-a@', '+', 'Bad Model', '21:9', '0:9', '9:0', '1:9', '100000000000000000000:1', '-1:2', 'NaN:1', 'synthetic', 'planet-ultrawide',
  '\u202e\u202d', '\ud800', 'a'.repeat(129), 'ok-id', ':', '1e400:1', 'x'.repeat(100_000), `syn-a+${'a'.repeat(70_000)}`, '\u007f\u0085',
];
const RAW_STRINGS: Uint8Array[] = [Uint8Array.from([0xff, 0xfe, 0xfd]), Uint8Array.from([0xc0, 0x80]), Uint8Array.from([0xed, 0xa0, 0x80]), Buffer.alloc(100_000, 0x41)];

/** The mutations: each takes the fields of a valid request and returns the fields to send. */
type FieldMutation = (fields: RawField[], rng: () => number) => RawField[];

const pick = <T>(xs: readonly T[], rng: () => number): T => xs[Math.floor(rng() * xs.length)]!;

function setField(fields: RawField[], f: RawField): RawField[] {
  return [...fields.filter((x) => x.no !== f.no), f];
}

function randomBytes(n: number, rng: () => number): Uint8Array {
  return Uint8Array.from({ length: n }, () => Math.floor(rng() * 256));
}

function planetPayload(rng: () => number): Uint8Array {
  const slots: RawField[] = [1, 2, 3, 4].map((no) => ({ no, wire: 2, payload: utf8(pick(STRINGS, rng)) }));
  const extras = Math.floor(rng() * 3) === 0 ? 17 + Math.floor(rng() * 100) : Math.floor(rng() * 4);
  for (let i = 0; i < extras; i++) slots.push({ no: 5, wire: 2, payload: utf8(pick(STRINGS, rng)) });
  if (rng() < 0.2) slots.push({ no: 1 + Math.floor(rng() * 5), wire: pick([0, 1, 5] as const, rng), payload: pick([varint(5n), new Uint8Array(8), new Uint8Array(4)], rng) });
  return encodeFields(slots.filter((s) => s.wire !== 2 || s.payload.length > 0 || rng() < 0.5));
}

const FIELD_MUTATIONS: Record<string, FieldMutation> = {
  'wrong wire type': (fs, rng) => {
    const no = pick(ALL_FIELDS, rng);
    const wire = pick([0, 1, 2, 5] as const, rng);
    const payload = wire === 0 ? varint(BigInt(Math.floor(rng() * 1e6))) : wire === 1 ? randomBytes(8, rng) : wire === 5 ? randomBytes(4, rng) : randomBytes(Math.floor(rng() * 16), rng);
    return setField(fs, { no, wire, payload });
  },
  'out-of-range number': (fs, rng) => setField(fs, { no: pick(VARINT_FIELDS, rng), wire: 0, payload: varint(pick(NUMBERS, rng)) }),
  'odd float': (fs, rng) => setField(fs, { no: pick(FLOAT_FIELDS, rng), wire: 5, payload: float32(pick(FLOATS, rng)) }),
  'odd string': (fs, rng) => setField(fs, { no: pick(STRING_FIELDS, rng), wire: 2, payload: rng() < 0.8 ? utf8(pick(STRINGS, rng)) : pick(RAW_STRINGS, rng) }),
  'unknown enum value': (fs, rng) => setField(fs, { no: 15, wire: 0, payload: varint(pick(ENUMS, rng)) }),
  'oneof conflict': (fs, rng) => {
    const prompt: RawField = { no: 2, wire: 2, payload: utf8(pick(STRINGS, rng)) };
    const planet: RawField = { no: 3, wire: 2, payload: planetPayload(rng) };
    const rest = fs.filter((f) => f.no !== 2 && f.no !== 3);
    return rng() < 0.5 ? [...rest, prompt, planet] : [...rest, planet, prompt];
  },
  'odd planet': (fs, rng) => setField(fs.filter((f) => f.no !== 2), { no: 3, wire: 2, payload: rng() < 0.8 ? planetPayload(rng) : randomBytes(Math.floor(rng() * 32), rng) }),
  'odd seed': (fs, rng) => setField(fs, { no: 5, wire: 0, payload: varint(pick([0n, 1n, -1n, -(2n ** 63n), 2n ** 63n, 2n ** 64n - 1n, 2n ** 64n, 2n ** 64n + 5n, 2n ** 77n], rng)) }),
  'odd size': (fs, rng) => setField(setField(fs.filter((f) => f.no !== 11), { no: 9, wire: 0, payload: varint(pick(NUMBERS, rng)) }), { no: 10, wire: 0, payload: varint(pick(NUMBERS, rng)) }),
  'aspect with size': (fs, rng) => setField(setField(fs, { no: 11, wire: 2, payload: utf8(pick(['21:9', '1:1', '9:21', '8:1', '9:1', 'x'], rng)) }), { no: 9, wire: 0, payload: varint(pick(NUMBERS, rng)) }),
  'odd init_image': (fs, rng) => setField(fs, { no: 14, wire: 2, payload: rng() < 0.5 ? Buffer.concat([PNG_LIKE.subarray(0, 8), randomBytes(Math.floor(rng() * 64), rng)]) : randomBytes(Math.floor(rng() * 64), rng) }),
  'drop a field': (fs, rng) => fs.filter((_, i) => i !== Math.floor(rng() * fs.length)),
  'duplicate a field': (fs, rng) => (fs.length ? [...fs, pick(fs, rng)] : fs),
  'unknown field': (fs, rng) => [...fs, { no: pick([18, 19, 99, 1000, 536_870_911], rng), wire: pick([0, 2, 5] as const, rng), payload: pick([varint(7n), randomBytes(4, rng), utf8('xyz')], rng) }].map((f) => (f.wire === 5 && f.payload.length !== 4 ? { ...f, payload: randomBytes(4, rng) } : f.wire === 0 ? { ...f, payload: varint(7n) } : f)),
  'empty message': () => [],
};

type ByteMutation = (bytes: Buffer, other: Buffer, rng: () => number) => Buffer;

const BYTE_MUTATIONS: Record<string, ByteMutation> = {
  'bit flips': (b, _o, rng) => {
    const out = Buffer.from(b);
    const n = 1 + Math.floor(rng() * 8);
    for (let i = 0; i < n && out.length; i++) out[Math.floor(rng() * out.length)]! ^= 1 << Math.floor(rng() * 8);
    return out;
  },
  truncation: (b, _o, rng) => b.subarray(0, Math.floor(rng() * b.length)),
  splicing: (b, o, rng) => Buffer.concat([b.subarray(0, Math.floor(rng() * b.length)), o.subarray(Math.floor(rng() * o.length))]),
  'byte insertion': (b, _o, rng) => {
    const at = Math.floor(rng() * (b.length + 1));
    return Buffer.concat([b.subarray(0, at), randomBytes(1 + Math.floor(rng() * 8), rng), b.subarray(at)]);
  },
  'random bytes': (_b, _o, rng) => Buffer.from(randomBytes(1 + Math.floor(rng() * 64), rng)),
};

/** The valid requests, encoded once. */
function validEncodings(): Buffer[] {
  const t = generateRequestType();
  return VALID_REQUESTS.map((r) => Buffer.from(t.encode(t.fromObject(r)).finish()));
}

/**
 * Every single-field edge value on the first valid request: each odd string in each string field,
 * each odd number in each integer field, each odd float in each float field, each enum value. Run
 * first, so rare values (a 100,000-character aspect) are never left to chance.
 */
function edgeCases(): Array<Omit<FuzzCase, 'index'>> {
  const base = rawFields(validEncodings()[0]!);
  const out: Array<Omit<FuzzCase, 'index'>> = [];
  for (const no of STRING_FIELDS) for (const v of [...STRINGS.map(utf8), ...RAW_STRINGS]) out.push({ mutation: 'edge string', bytes: encodeFields(setField(base, { no, wire: 2, payload: v })) });
  for (const no of VARINT_FIELDS) for (const v of NUMBERS) out.push({ mutation: 'edge number', bytes: encodeFields(setField(base, { no, wire: 0, payload: varint(v) })) });
  for (const no of FLOAT_FIELDS) for (const v of FLOATS) out.push({ mutation: 'edge float', bytes: encodeFields(setField(base, { no, wire: 5, payload: float32(v) })) });
  for (const v of ENUMS) out.push({ mutation: 'edge enum', bytes: encodeFields(setField(base, { no: 15, wire: 0, payload: varint(v) })) });
  return out;
}

/**
 * `count` fuzz cases: first the single-field edge cases (about 420), then random ones: about 10%
 * valid requests unchanged (the server must answer them OK), 60% field-wise mutations (a quarter
 * of them two stacked), 30% byte-wise mutations.
 */
export function fuzzCases(count: number, rng: () => number): FuzzCase[] {
  const valid = validEncodings();
  const fieldNames = Object.keys(FIELD_MUTATIONS);
  const byteNames = Object.keys(BYTE_MUTATIONS);
  const cases: FuzzCase[] = edgeCases().slice(0, count).map((c, index) => ({ index, ...c }));
  for (let index = cases.length; index < count; index++) {
    const base = pick(valid, rng);
    const roll = rng();
    if (roll < 0.1) {
      cases.push({ index, mutation: 'valid', bytes: base });
    } else if (roll < 0.7) {
      const first = pick(fieldNames, rng);
      let fields = FIELD_MUTATIONS[first]!(rawFields(base), rng);
      let mutation = first;
      if (rng() < 0.25) {
        const second = pick(fieldNames, rng);
        fields = FIELD_MUTATIONS[second]!(fields, rng);
        mutation = `${first} + ${second}`;
      }
      cases.push({ index, mutation, bytes: encodeFields(fields) });
    } else {
      const name = pick(byteNames, rng);
      cases.push({ index, mutation: name, bytes: BYTE_MUTATIONS[name]!(base, pick(valid, rng), rng) });
    }
  }
  return cases;
}
