/**
 * A small codec for C structs exchanged through ioctls: little-endian, natural alignment
 * (the LP64 ABI of x86_64 and arm64, where `__u64` and pointers are 8-byte aligned).
 *
 * Value mapping: u8/u16/u32/s32 fields are numbers, u64 fields are bigints (a u64 above
 * 2^53 must survive a round trip exactly). Writes follow C assignment: an integer is
 * truncated to the field width (-1 into a u32 is 0xffffffff); a u64 also accepts a safe
 * integer number. Non-integer values and unknown field names are programming errors and
 * throw RangeError; neither can be produced by decoding user bytes.
 *
 * Short buffers: every access is bounds-checked first and throws KernelError(EFAULT) when the
 * struct (or field) does not fit in the buffer at the given offset, the error copy_from_user
 * gives for an unreadable user range. Nothing is read or written in that case. Callers that
 * must return EINVAL for a short argsz check argsz against their minsz before decoding.
 */
import { KernelError } from './errno.js';

export type ScalarType = 'u8' | 'u16' | 'u32' | 's32' | 'u64';

/** A C flexible array member (`T data[]`): has an offset and alignment, occupies no bytes. */
export interface FlexArray<E extends ScalarType | AnyStructCodec = ScalarType | AnyStructCodec> {
  readonly flex: E;
}

export function flex<const E extends ScalarType | AnyStructCodec>(elem: E): FlexArray<E> {
  return { flex: elem };
}

export type FieldType = ScalarType | AnyStructCodec | FlexArray;
export type FieldSpec = readonly [name: string, type: FieldType];

type ValueOf<T> = T extends 'u64'
  ? bigint
  : T extends ScalarType
    ? number
    : T extends StructCodec<infer O>
      ? O
      : never;

type Simplify<T> = { [K in keyof T]: T[K] } & {};

/** The plain object a struct decodes to (flexible array members are not part of it). */
export type Decoded<F extends readonly FieldSpec[]> = Simplify<{
  [E in F[number] as E[1] extends FlexArray ? never : E[0]]: ValueOf<E[1]>;
}>;

/** What encode accepts: any subset of the fields; missing fields and padding become 0. */
export type StructInput<T> = {
  [K in keyof T]?: T[K] extends bigint ? bigint | number : T[K] extends number ? number : StructInput<T[K]>;
};

export interface FieldLayout {
  readonly name: string;
  readonly offset: number;
  /** Bytes occupied; 0 for a flexible array member. */
  readonly size: number;
  readonly align: number;
  readonly scalar: ScalarType | null;
  /** Nested struct, or the element struct of a flexible array. */
  readonly struct: AnyStructCodec | null;
  /** Element type of a flexible array member; null for ordinary fields. */
  readonly flexOf: ScalarType | AnyStructCodec | null;
}

export interface StructCodec<T extends object> {
  readonly name: string;
  /** sizeof(struct name), tail padding included. */
  readonly size: number;
  readonly align: number;
  readonly fields: readonly FieldLayout[];
  /** offsetof(); nested members with a dotted path ("bitmap.pgsize"). */
  offsetOf(path: string): number;
  /** sizeof the member (0 for a flexible array). */
  sizeOf(path: string): number;
  field(path: string): FieldLayout;
  decode(buf: Uint8Array, off?: number): T;
  /** Writes the struct image at `off` (into a fresh zeroed buffer when none is given). */
  encode(obj: StructInput<T>, buf?: Uint8Array, off?: number): Uint8Array;
  read<K extends keyof T & string>(buf: Uint8Array, field: K, off?: number): T[K];
  write<K extends keyof T & string>(
    buf: Uint8Array,
    field: K,
    value: StructInput<T>[K] & {},
    off?: number,
  ): void;
}

/** Any codec, where the decoded type does not matter (nesting, layout queries). */
export type AnyStructCodec = StructCodec<any>;

const SCALAR_SIZE: Record<ScalarType, number> = { u8: 1, u16: 2, u32: 4, s32: 4, u64: 8 };

const TWO32 = 2 ** 32;

function checkRange(buf: Uint8Array, off: number, len: number, what: string): void {
  if (!Number.isInteger(off) || off < 0 || off + len > buf.length) {
    throw new KernelError('EFAULT', `${what}: ${len} bytes at ${off} outside a ${buf.length}-byte buffer`);
  }
}

/* Scalar accessors: byte-wise so they work on any Uint8Array view without allocating. */

export function readU16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

export function readU32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

export function readS32(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24);
}

export function readU64(b: Uint8Array, o: number): bigint {
  return (BigInt(readU32(b, o + 4)) << 32n) | BigInt(readU32(b, o));
}

/** A u64 as a number; exact below 2^53, rounded above (use for sizes/offsets known small). */
export function readU64Number(b: Uint8Array, o: number): number {
  return readU32(b, o + 4) * TWO32 + readU32(b, o);
}

export function writeU16(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
}

export function writeU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v & 0xff;
  b[o + 1] = (v >>> 8) & 0xff;
  b[o + 2] = (v >>> 16) & 0xff;
  b[o + 3] = (v >>> 24) & 0xff;
}

export function writeU64(b: Uint8Array, o: number, v: bigint | number): void {
  let lo: number;
  let hi: number;
  if (typeof v === 'number' && v >= 0 && v <= Number.MAX_SAFE_INTEGER) {
    lo = v % TWO32;
    hi = Math.floor(v / TWO32);
  } else {
    const w = BigInt.asUintN(64, BigInt(v));
    lo = Number(w & 0xffffffffn);
    hi = Number(w >> 32n);
  }
  writeU32(b, o, lo);
  writeU32(b, o + 4, hi);
}

function checkInteger(v: unknown, what: string, wide: boolean): void {
  if (typeof v === 'bigint') return;
  if (typeof v === 'number' && (wide ? Number.isSafeInteger(v) : Number.isInteger(v))) return;
  throw new RangeError(`${what}: ${String(v)} is not an integer the field can hold`);
}

/** Truncates like a C assignment; a bigint is accepted for narrow fields too. */
function toNarrow(v: number | bigint): number {
  return typeof v === 'bigint' ? Number(BigInt.asIntN(32, v)) : v;
}

function readScalar(t: ScalarType, b: Uint8Array, o: number): number | bigint {
  switch (t) {
    case 'u8':
      return b[o]!;
    case 'u16':
      return readU16(b, o);
    case 'u32':
      return readU32(b, o);
    case 's32':
      return readS32(b, o);
    case 'u64':
      return readU64(b, o);
  }
}

function writeScalar(t: ScalarType, b: Uint8Array, o: number, v: number | bigint, what: string): void {
  checkInteger(v, what, t === 'u64');
  switch (t) {
    case 'u8':
      b[o] = toNarrow(v) & 0xff;
      return;
    case 'u16':
      writeU16(b, o, toNarrow(v));
      return;
    case 'u32':
    case 's32':
      writeU32(b, o, toNarrow(v));
      return;
    case 'u64':
      writeU64(b, o, v);
      return;
  }
}

function alignUp(n: number, a: number): number {
  return Math.ceil(n / a) * a;
}

/**
 * Declares a struct. Offsets follow the C rules: each member at the next multiple of its
 * alignment, the struct aligned to its largest member (flexible array elements included),
 * sizeof rounded up to that alignment.
 */
export function defineStruct<const F extends readonly FieldSpec[]>(
  name: string,
  specs: F,
): StructCodec<Decoded<F>> {
  type T = Decoded<F>;
  const fields: FieldLayout[] = [];
  const byName = new Map<string, FieldLayout>();
  let off = 0;
  let structAlign = 1;
  for (let i = 0; i < specs.length; i++) {
    const [fname, type] = specs[i]!;
    if (byName.has(fname)) throw new RangeError(`${name}: duplicate field ${fname}`);
    let layout: FieldLayout;
    if (typeof type === 'string') {
      const size = SCALAR_SIZE[type];
      off = alignUp(off, size);
      layout = { name: fname, offset: off, size, align: size, scalar: type, struct: null, flexOf: null };
    } else if ('flex' in type) {
      if (i !== specs.length - 1) throw new RangeError(`${name}: flexible array ${fname} must be last`);
      const elem = type.flex;
      const align = typeof elem === 'string' ? SCALAR_SIZE[elem] : elem.align;
      off = alignUp(off, align);
      layout = {
        name: fname,
        offset: off,
        size: 0,
        align,
        scalar: null,
        struct: typeof elem === 'string' ? null : elem,
        flexOf: elem,
      };
    } else {
      off = alignUp(off, type.align);
      layout = { name: fname, offset: off, size: type.size, align: type.align, scalar: null, struct: type, flexOf: null };
    }
    fields.push(layout);
    byName.set(fname, layout);
    off += layout.size;
    structAlign = Math.max(structAlign, layout.align);
  }
  const size = alignUp(off, structAlign);
  const valueFields = fields.filter((f) => f.flexOf === null);

  function resolve(path: string): { layout: FieldLayout; offset: number } {
    const dot = path.indexOf('.');
    const head = dot < 0 ? path : path.slice(0, dot);
    const f = byName.get(head);
    if (!f) throw new RangeError(`${name}: no field ${path}`);
    if (dot < 0) return { layout: f, offset: f.offset };
    if (!f.struct || f.flexOf !== null) throw new RangeError(`${name}: ${head} has no members`);
    const rest = path.slice(dot + 1);
    return { layout: f.struct.field(rest), offset: f.offset + f.struct.offsetOf(rest) };
  }

  function decodeAt(buf: Uint8Array, at: number): T {
    const out: Record<string, unknown> = {};
    for (const f of valueFields) {
      out[f.name] = f.scalar ? readScalar(f.scalar, buf, at + f.offset) : f.struct!.decode(buf, at + f.offset);
    }
    return out as T;
  }

  function encodeAt(obj: StructInput<T>, buf: Uint8Array, at: number): void {
    buf.fill(0, at, at + size);
    const src = obj as Record<string, unknown>;
    for (const f of valueFields) {
      const v = src[f.name];
      if (v === undefined) continue;
      if (f.scalar) writeScalar(f.scalar, buf, at + f.offset, v as number | bigint, `${name}.${f.name}`);
      else f.struct!.encode(v as object, buf, at + f.offset);
    }
  }

  const codec: StructCodec<T> = {
    name,
    size,
    align: structAlign,
    fields,
    offsetOf: (path) => resolve(path).offset,
    sizeOf: (path) => resolve(path).layout.size,
    field: (path) => resolve(path).layout,
    decode(buf, off = 0) {
      checkRange(buf, off, size, `decode ${name}`);
      return decodeAt(buf, off);
    },
    encode(obj, buf, off = 0) {
      const dst = buf ?? new Uint8Array(off + size);
      checkRange(dst, off, size, `encode ${name}`);
      encodeAt(obj, dst, off);
      return dst;
    },
    read(buf, fieldName, off = 0) {
      const f = byName.get(fieldName);
      if (!f || f.flexOf !== null) throw new RangeError(`${name}: no readable field ${fieldName}`);
      checkRange(buf, off + f.offset, f.size, `read ${name}.${fieldName}`);
      const at = off + f.offset;
      return (f.scalar ? readScalar(f.scalar, buf, at) : f.struct!.decode(buf, at)) as T[typeof fieldName];
    },
    write(buf, fieldName, value, off = 0) {
      const f = byName.get(fieldName);
      if (!f || f.flexOf !== null) throw new RangeError(`${name}: no writable field ${fieldName}`);
      checkRange(buf, off + f.offset, f.size, `write ${name}.${fieldName}`);
      const at = off + f.offset;
      if (f.scalar) writeScalar(f.scalar, buf, at, value as number | bigint, `${name}.${fieldName}`);
      else f.struct!.encode(value as object, buf, at);
    },
  };
  return codec;
}

/** `offsetofend(struct, member)`: the kernel's usual minsz for an extensible ioctl struct. */
export function offsetofend(codec: AnyStructCodec, path: string): number {
  return codec.offsetOf(path) + codec.sizeOf(path);
}

/** Decodes `count` consecutive elements (a flexible array) starting at `off`. */
export function decodeArray<T extends object>(
  elem: StructCodec<T>,
  buf: Uint8Array,
  off: number,
  count: number,
): T[] {
  if (!Number.isInteger(count) || count < 0) throw new KernelError('EINVAL', `bad element count ${count}`);
  checkRange(buf, off, count * elem.size, `decode ${elem.name}[${count}]`);
  const out: T[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = elem.decode(buf, off + i * elem.size);
  return out;
}

/** Encodes elements back to back at `off` (into a fresh buffer when none is given). */
export function encodeArray<T extends object>(
  elem: StructCodec<T>,
  items: readonly StructInput<T>[],
  buf?: Uint8Array,
  off = 0,
): Uint8Array {
  const dst = buf ?? new Uint8Array(off + items.length * elem.size);
  checkRange(dst, off, items.length * elem.size, `encode ${elem.name}[${items.length}]`);
  for (let i = 0; i < items.length; i++) elem.encode(items[i]!, dst, off + i * elem.size);
  return dst;
}
