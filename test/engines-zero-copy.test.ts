/**
 * Zero-copy source reads (DmaPort.readView): when the port lends a live view of a flat source,
 * the SEC and ZIP engines work on it instead of copying it into their staging buffer, and the
 * results are those of node:crypto / node:zlib, including in-place requests (dst == src),
 * where every output byte is written only after the whole input was consumed. A port without
 * a view for the range (null) falls back to the copying read.
 */
import { describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import type { DmaPort } from '../src/hw/dma.js';
import { createEngine } from '../src/hw/engines/engine.js';
import { MEM_CHUNK_SIZE, SparseMemory } from '../src/mem/sparse-memory.js';
import { GuestRamAllocator } from '../src/guest/ram.js';
import { prepareCipherAt, prepareHmacAt } from '../src/guest/sec-job.js';
import { prepareZipAt } from '../src/guest/zip-job.js';

/** DMA straight into a SparseMemory, counting copies and lent views. */
class ViewDma implements DmaPort {
  reads = 0;
  readBytes = 0;
  views = 0;
  lend = true;
  constructor(readonly mem: SparseMemory) {}
  read(iova: number, dst: Uint8Array): boolean {
    this.reads++;
    this.readBytes += dst.length;
    this.mem.read(iova, dst);
    return true;
  }
  write(iova: number, src: Uint8Array): boolean {
    this.mem.write(iova, src);
    return true;
  }
  readView(iova: number, len: number): Uint8Array | null {
    if (!this.lend) return null;
    const v = this.mem.view(iova, len);
    if (v !== null) this.views++;
    return v;
  }
}

function setup() {
  const mem = new SparseMemory(16 * MEM_CHUNK_SIZE);
  const ram = new GuestRamAllocator(mem, MEM_CHUNK_SIZE, 15 * MEM_CHUNK_SIZE);
  const dma = new ViewDma(mem);
  const put = (d: Uint8Array, room = d.length) => {
    // chunk-aligned, so a buffer up to 64 KiB lies in one backed chunk
    const a = ram.alloc(Math.max(room, 1), MEM_CHUNK_SIZE);
    mem.write(a, d);
    if (room > d.length) mem.fill(a + d.length, room - d.length, 0xee);
    return a;
  };
  const get = (a: number, n: number) => Buffer.from(mem.readBytes(a, n));
  return { mem, ram, dma, put, get };
}

describe('zero-copy DMA reads', () => {
  it('SEC aes-256-cbc in place (dst == src) on a lent view equals node:crypto; the source was not copied', () => {
    const { ram, dma, put, get } = setup();
    const key = crypto.randomBytes(32);
    const iv = crypto.randomBytes(16);
    const data = crypto.randomBytes(MEM_CHUNK_SIZE);
    const buf = put(data);
    const sqe = new Uint8Array(128);
    prepareCipherAt(ram, 'v3', { alg: 'aes-256-cbc', key: put(key), iv: put(iv), src: buf, dst: buf, len: data.length }).fill(sqe);
    expect(createEngine('sec').process(sqe, { dma, algType: 0, hwVersion: 'v3' })).toBe(true);
    const c = crypto.createCipheriv('aes-256-cbc', key, iv);
    c.setAutoPadding(false);
    expect(get(buf, data.length)).toEqual(Buffer.concat([c.update(data), c.final()]));
    expect(dma.views).toBe(1);
    expect(dma.readBytes).toBe(32 + 16); // key and IV only
  });

  it('SEC hmac-sha512 over a view, and the same request with views refused, both equal node:crypto', () => {
    const { mem, ram, dma, put, get } = setup();
    const key = crypto.randomBytes(64);
    const data = crypto.randomBytes(40_000);
    const mac = put(new Uint8Array(0), 64);
    const sqe = new Uint8Array(128);
    const req = prepareHmacAt(ram, 'v2', { alg: 'hmac-sha512', key: put(key), keyLen: 64, src: put(data), len: data.length, mac });
    const want = crypto.createHmac('sha512', key).update(data).digest();
    const engine = createEngine('sec');
    req.fill(sqe);
    expect(engine.process(sqe, { dma, algType: 0, hwVersion: 'v2' })).toBe(true);
    expect(get(mac, 64)).toEqual(want);
    expect([dma.views, dma.readBytes]).toEqual([1, 64]);
    dma.lend = false;
    mem.fill(mac, 64, 0); // the second run must write the digest again
    const sqe2 = new Uint8Array(128);
    req.fill(sqe2);
    expect(engine.process(sqe2, { dma, algType: 0, hwVersion: 'v2' })).toBe(true);
    expect(get(mac, 64)).toEqual(want);
    expect(dma.readBytes).toBe(64 + 64 + data.length); // the fallback copied the source
  });

  it('a source that spans two memory chunks gets no view and is copied', () => {
    const { mem, ram, dma, get } = setup();
    const key = crypto.randomBytes(16);
    const data = crypto.randomBytes(4096);
    const src = 3 * MEM_CHUNK_SIZE - 2048; // straddles a chunk boundary
    mem.write(src, data);
    const k = 5 * MEM_CHUNK_SIZE;
    mem.write(k, key);
    const dst = 6 * MEM_CHUNK_SIZE;
    const sqe = new Uint8Array(128);
    prepareCipherAt(ram, 'v3', { alg: 'aes-128-ecb', key: k, iv: 0, src, dst, len: data.length }).fill(sqe);
    expect(createEngine('sec').process(sqe, { dma, algType: 0, hwVersion: 'v3' })).toBe(true);
    const c = crypto.createCipheriv('aes-128-ecb', key, null);
    c.setAutoPadding(false);
    expect(get(dst, data.length)).toEqual(Buffer.concat([c.update(data), c.final()]));
    expect(dma.views).toBe(0);
    expect(dma.readBytes).toBe(16 + data.length);
  });

  it('ZIP deflate and inflate on lent views round-trip through node:zlib', () => {
    const { ram, dma, put, get } = setup();
    const text = Buffer.from('zero copy reads lend the engine guest memory for one request. '.repeat(900)).subarray(0, 50_000);
    const src = put(text);
    const cap = 60_000;
    const dst = put(new Uint8Array(0), cap);
    const sqe = new Uint8Array(128);
    prepareZipAt(ram, { op: 'compress', format: 'deflate', src, len: text.length, dst, cap }).fill(sqe);
    const zip = createEngine('zip');
    expect(zip.process(sqe, { dma, algType: 0, hwVersion: 'v3' })).toBe(true);
    const produced = (sqe[4]! | (sqe[5]! << 8) | (sqe[6]! << 16) | (sqe[7]! << 24)) >>> 0; // dw1 produced (qm-hardware.md 6)
    expect(produced).toBeGreaterThan(0);
    expect(produced).toBeLessThan(text.length / 4);
    expect(zlib.inflateRawSync(get(dst, produced))).toEqual(text);
    const out = put(new Uint8Array(0), text.length);
    const sqe2 = new Uint8Array(128);
    prepareZipAt(ram, { op: 'decompress', format: 'deflate', src: dst, len: produced, dst: out, cap: text.length }).fill(sqe2);
    expect(zip.process(sqe2, { dma, algType: 1, hwVersion: 'v3' })).toBe(true);
    expect(get(out, text.length)).toEqual(text);
    expect(dma.views).toBe(2);
    expect(dma.readBytes).toBe(0);
  });
});

describe('SparseMemory.view', () => {
  it('is a live view inside one backed chunk, null across chunks or on unbacked space; EFAULT outside', () => {
    const m = new SparseMemory(4 * MEM_CHUNK_SIZE);
    expect(m.view(100, 10)).toBeNull(); // never written: no storage to lend
    m.write(100, Uint8Array.of(1, 2, 3));
    const v = m.view(100, 3)!;
    expect(Array.from(v)).toEqual([1, 2, 3]);
    m.write(101, Uint8Array.of(9));
    expect(v[1]).toBe(9); // live
    m.write(MEM_CHUNK_SIZE, Uint8Array.of(7));
    expect(m.view(MEM_CHUNK_SIZE - 2, 4)).toBeNull();
    expect(() => m.view(4 * MEM_CHUNK_SIZE - 1, 2)).toThrow(/EFAULT/);
    const flat = new SparseMemory(3 * MEM_CHUNK_SIZE, { contiguous: true });
    flat.write(MEM_CHUNK_SIZE - 1, Uint8Array.of(5, 6));
    expect(Array.from(flat.view(MEM_CHUNK_SIZE - 1, 2)!)).toEqual([5, 6]);
  });
});
