import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createHash } from 'node:crypto';
import { MEM_CHUNK_SIZE, PAGE_SIZE, SparseMemory } from '../src/mem/sparse-memory.js';
import { KernelError } from '../src/uapi/errno.js';

function errOf(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.code;
    throw e;
  }
  return 'none';
}

/** Five chunks and a bit: every chunk-crossing case fits. */
const SIZE = 5 * MEM_CHUNK_SIZE + 1234;

type Op =
  | { k: 'write'; addr: number; data: Uint8Array }
  | { k: 'fill'; addr: number; len: number; byte: number }
  | { k: 'u8' | 'u16' | 'u32'; addr: number; v: number }
  | { k: 'u64'; addr: number; v: bigint };

const addrArb = (width: number) =>
  fc.oneof(
    fc.integer({ min: 0, max: SIZE - width }),
    // near chunk boundaries, where multi-byte accesses split
    fc.integer({ min: 1, max: 5 }).chain((c) => fc.integer({ min: c * MEM_CHUNK_SIZE - 8, max: c * MEM_CHUNK_SIZE + 8 })),
  ).filter((a) => a + width <= SIZE);

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 300 }).chain((data) => addrArb(data.length).map((addr) => ({ k: 'write' as const, addr, data }))),
  fc.record({ len: fc.integer({ min: 0, max: 3 * MEM_CHUNK_SIZE }), byte: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 255 })) })
    .chain(({ len, byte }) => addrArb(len).map((addr) => ({ k: 'fill' as const, addr, len, byte }))),
  addrArb(1).chain((addr) => fc.integer({ min: 0, max: 255 }).map((v) => ({ k: 'u8' as const, addr, v }))),
  addrArb(2).chain((addr) => fc.integer({ min: 0, max: 0xffff }).map((v) => ({ k: 'u16' as const, addr, v }))),
  addrArb(4).chain((addr) => fc.integer({ min: 0, max: 0xffffffff }).map((v) => ({ k: 'u32' as const, addr, v }))),
  addrArb(8).chain((addr) => fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }).map((v) => ({ k: 'u64' as const, addr, v }))),
);

function applyBoth(mem: SparseMemory, ref: Uint8Array, op: Op): void {
  const dv = new DataView(ref.buffer);
  switch (op.k) {
    case 'write': mem.write(op.addr, op.data); ref.set(op.data, op.addr); break;
    case 'fill': mem.fill(op.addr, op.len, op.byte); ref.fill(op.byte, op.addr, op.addr + op.len); break;
    case 'u8': mem.setU8(op.addr, op.v); ref[op.addr] = op.v; break;
    case 'u16': mem.setU16(op.addr, op.v); dv.setUint16(op.addr, op.v, true); break;
    case 'u32': mem.setU32(op.addr, op.v); dv.setUint32(op.addr, op.v, true); break;
    case 'u64': mem.setU64(op.addr, op.v); dv.setBigUint64(op.addr, op.v, true); break;
  }
}

/**
 * The documented hash format, computed independently over a flat array: 64 KiB blocks
 * relative to `start`, all-zero blocks skipped, others hashed as u64-LE block number + bytes.
 */
function refHash(ref: Uint8Array, start: number, len: number): string {
  const h = createHash('sha256');
  for (let b = 0; b * MEM_CHUNK_SIZE < len; b++) {
    const lo = start + b * MEM_CHUNK_SIZE;
    const bytes = ref.subarray(lo, Math.min(start + len, lo + MEM_CHUNK_SIZE));
    if (bytes.every((x) => x === 0)) continue;
    const hdr = Buffer.alloc(8);
    hdr.writeBigUInt64LE(BigInt(b));
    h.update(hdr);
    h.update(bytes);
  }
  return h.digest('hex');
}

describe('SparseMemory against a flat Uint8Array reference', () => {
  it('reads, typed getters and hashes agree after random writes', () => {
    fc.assert(fc.property(
      fc.array(opArb, { maxLength: 25 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 2 * MEM_CHUNK_SIZE })), { minLength: 3, maxLength: 3 }),
      (ops, probes) => {
        const mem = new SparseMemory(SIZE);
        const ref = new Uint8Array(SIZE);
        for (const op of ops) applyBoth(mem, ref, op);
        const dv = new DataView(ref.buffer);
        for (const [a, l] of probes) {
          const addr = a % SIZE;
          const len = Math.min(l, SIZE - addr);
          expect(Buffer.compare(mem.readBytes(addr, len), ref.subarray(addr, addr + len))).toBe(0);
          expect(mem.isZero(addr, len)).toBe(ref.subarray(addr, addr + len).every((x) => x === 0));
          const w = Math.min(addr, SIZE - 8);
          expect(mem.getU8(w)).toBe(ref[w]);
          expect(mem.getU16(w)).toBe(dv.getUint16(w, true));
          expect(mem.getU32(w)).toBe(dv.getUint32(w, true));
          expect(mem.getU64(w)).toBe(dv.getBigUint64(w, true));
          expect(mem.hash(addr, len)).toBe(refHash(ref, addr, len));
        }
        for (const op of ops) {
          if (op.k === 'u64') expect(mem.getU64(op.addr)).toBe(dv.getBigUint64(op.addr, true));
        }
        expect(mem.hash()).toBe(refHash(ref, 0, SIZE));
        // the same bytes in a fully backed memory hash the same
        const flat = new SparseMemory(SIZE, { contiguous: true });
        flat.write(0, ref);
        expect(flat.hash()).toBe(mem.hash());
      },
    ), { numRuns: 60 });
  });

  it('getters across a chunk boundary read both chunks', () => {
    const mem = new SparseMemory(SIZE);
    const at = MEM_CHUNK_SIZE - 3;
    mem.setU64(at, 0x0102030405060708n);
    expect(mem.getU64(at)).toBe(0x0102030405060708n);
    expect(mem.getU32(at)).toBe(0x05060708);
    expect(mem.getU16(at + 2)).toBe(0x0506);
    expect(mem.getU8(MEM_CHUNK_SIZE)).toBe(0x05);
    expect(mem.backedBytes).toBe(2 * MEM_CHUNK_SIZE);
  });
});

describe('SparseMemory at terabyte scale', () => {
  it('an 8 TiB memory with a few writes backs only the chunks written', () => {
    const TiB = 2 ** 40;
    const mem = new SparseMemory(8 * TiB);
    mem.write(0, new Uint8Array([1, 2, 3]));
    mem.setU64(8 * TiB - 8, 0xfeedfacecafebeefn);
    mem.write(5 * TiB - 2, new Uint8Array([9, 8, 7, 6])); // crosses a chunk boundary
    expect(mem.backedBytes).toBe(4 * MEM_CHUNK_SIZE);
    expect(Array.from(mem.readBytes(0, 4))).toEqual([1, 2, 3, 0]);
    expect(mem.getU64(8 * TiB - 8)).toBe(0xfeedfacecafebeefn);
    expect(mem.getU32(5 * TiB - 2)).toBe(0x06070809);
    expect(mem.getU32(3 * TiB)).toBe(0);
    expect(errOf(() => mem.readBytes(8 * TiB - 7, 8))).toBe('EFAULT');
    const pages: number[] = [];
    mem.forEachBackedPage((pfn) => pages.push(pfn));
    expect(pages.length).toBe(4 * MEM_CHUNK_SIZE / PAGE_SIZE);
    expect(pages[0]).toBe(0);
    expect(pages[pages.length - 1]).toBe(8 * TiB / PAGE_SIZE - 1);
    expect(pages).toEqual([...pages].sort((a, b) => a - b));
    // zero-filling a whole chunk gives its storage back
    mem.fill(8 * TiB - MEM_CHUNK_SIZE, MEM_CHUNK_SIZE, 0);
    expect(mem.backedBytes).toBe(3 * MEM_CHUNK_SIZE);
    expect(mem.getU64(8 * TiB - 8)).toBe(0n);
    // whole-space scans touch only backed chunks
    expect(mem.isZero(0, 8 * TiB)).toBe(false);
    expect(mem.isZero(TiB, 4 * TiB - 2)).toBe(true);
    expect(mem.isZero(TiB, 4 * TiB - 1)).toBe(false);
    mem.fill(1, 4 * TiB, 0); // partial first chunk stays backed; 5 TiB chunks are outside
    expect(mem.backedBytes).toBe(3 * MEM_CHUNK_SIZE);
    expect(Array.from(mem.readBytes(0, 3))).toEqual([1, 0, 0]);
    expect(mem.getU32(5 * TiB - 2)).toBe(0x06070809);
    mem.fill(0, 8 * TiB, 0);
    expect(mem.backedBytes).toBe(0);
    expect(mem.isZero(0, 8 * TiB)).toBe(true);
  });

  it('hash depends on contents only, not on backing', () => {
    const a = new SparseMemory(2 ** 40);
    const b = new SparseMemory(2 ** 40);
    const empty = a.hash();
    b.write(123 * MEM_CHUNK_SIZE, new Uint8Array(100)); // backs a chunk with zeros
    expect(b.backedBytes).toBe(MEM_CHUNK_SIZE);
    expect(b.hash()).toBe(empty);
    a.setU32(777_777, 0xdeadbeef);
    expect(a.hash()).not.toBe(empty);
    b.write(777_777, new Uint8Array([0xef, 0xbe, 0xad, 0xde]));
    expect(b.hash()).toBe(a.hash());
    // the same bytes at a different place hash differently
    const c = new SparseMemory(2 ** 40);
    c.setU32(777_777 + MEM_CHUNK_SIZE, 0xdeadbeef);
    expect(c.hash()).not.toBe(a.hash());
  });
});

describe('SparseMemory pages, views and errors', () => {
  it('copyPage returns page contents, zeros for unbacked pages', () => {
    const mem = new SparseMemory(10 * PAGE_SIZE);
    mem.fill(3 * PAGE_SIZE + 10, 5, 0xab);
    const dst = new Uint8Array(PAGE_SIZE).fill(0xff);
    mem.copyPage(3, dst);
    expect(dst[9]).toBe(0);
    expect(Array.from(dst.subarray(10, 15))).toEqual([0xab, 0xab, 0xab, 0xab, 0xab]);
    expect(dst[15]).toBe(0);
    mem.copyPage(8, dst);
    expect(dst.every((v) => v === 0)).toBe(true);
    expect(errOf(() => mem.copyPage(10, dst))).toBe('EFAULT');
    expect(errOf(() => mem.copyPage(0, new Uint8Array(100)))).toBe('EINVAL');
  });

  it('a contiguous memory exposes live flat views', () => {
    const mem = new SparseMemory(3 * MEM_CHUNK_SIZE + 100, { contiguous: true });
    expect(mem.backedBytes).toBe(3 * MEM_CHUNK_SIZE + 100);
    const v = mem.flatView(MEM_CHUNK_SIZE - 2, 4);
    v.set([1, 2, 3, 4]);
    expect(mem.getU32(MEM_CHUNK_SIZE - 2)).toBe(0x04030201);
    mem.setU8(MEM_CHUNK_SIZE + 1, 0x55);
    expect(v[3]).toBe(0x55);
    mem.fill(0, 3 * MEM_CHUNK_SIZE + 100, 0); // zero-fill keeps storage of a contiguous memory
    expect(mem.backedBytes).toBe(3 * MEM_CHUNK_SIZE + 100);
    expect(v[3]).toBe(0);
    expect(errOf(() => new SparseMemory(100).flatView(0, 1))).toBe('EINVAL');
  });

  it('out-of-range and malformed accesses are EFAULT and change nothing', () => {
    const mem = new SparseMemory(1000);
    expect(errOf(() => mem.write(998, new Uint8Array(3).fill(1)))).toBe('EFAULT');
    expect(mem.backedBytes).toBe(0);
    expect(errOf(() => mem.getU32(997))).toBe('EFAULT');
    expect(errOf(() => mem.setU64(993, 1n))).toBe('EFAULT');
    expect(errOf(() => mem.getU8(-1))).toBe('EFAULT');
    expect(errOf(() => mem.read(1.5, new Uint8Array(1)))).toBe('EFAULT');
    expect(errOf(() => mem.fill(0, 1001, 1))).toBe('EFAULT');
    expect(errOf(() => mem.hash(500, 501))).toBe('EFAULT');
    expect(mem.backedBytes).toBe(0);
    expect(errOf(() => new SparseMemory(-5))).toBe('EINVAL');
    expect(errOf(() => new SparseMemory(2 ** 53))).toBe('EINVAL');
  });
});
