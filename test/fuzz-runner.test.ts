/**
 * The fuzz runner itself (issue 6 item 1): a toy campaign with a planted bug must be caught,
 * shrunk to the ops that matter, attributed to a known-bug entry when one matches, and the
 * run must be deterministic per seed. The snapshot comparison must accept exactly the two
 * Linux behaviours it documents and nothing else.
 */
import { describe, expect, it } from 'vitest';
import { type Campaign, type KnownBug, Recorder, reproCommand, runCampaign } from '../src/fuzz/runner.js';
import { Rng } from '../src/sim/scheduler.js';
import { Weights } from '../src/fuzz/gen.js';
import { type WorldSnap, deepEqual, equalModulo } from '../src/fuzz/snapshot.js';
import type { DmaInfo } from '../src/vfio/type1/iommu.js';

type ToyOp = { v: number };
interface Toy {
  armed: boolean;
  total: number;
}

/** Values 0..99; the "bug": value 13 arms it, a later 42 throws a TypeError. */
function toy(knownBugs: KnownBug[] = []): Campaign<Toy, ToyOp> {
  return {
    name: 'toy',
    description: 'planted bug',
    defaultInputs: 500,
    checkpointEvery: 100,
    knownBugs,
    setup: () => ({ armed: false, total: 0 }),
    next: (_ctx, rng) => ({ v: rng.int(100) }),
    apply(ctx, op, rec) {
      rec.entry('toy');
      ctx.total += op.v;
      if (op.v === 13) ctx.armed = true;
      if (op.v === 42 && ctx.armed) throw new TypeError('planted');
      rec.ret(op.v % 3 === 0 ? -22 : 0);
    },
    describe: (op) => `op(${op.v})`,
    checkpoint() {},
  };
}

describe('fuzz runner', () => {
  it('catches an escaping exception and shrinks the history to the two ops that cause it', () => {
    const r = runCampaign(toy(), { seed: 7 });
    expect(r.violations).toHaveLength(1);
    const v = r.violations[0]!;
    expect(v.kind).toBe('exception');
    expect(v.message).toContain('TypeError: planted');
    expect(v.call).toBe('op(42)');
    expect(v.repro).toEqual(['op(13)', 'op(42)']);
    expect(reproCommand(v)).toBe(`npm run fuzz -- --campaign toy --seed 7 --inputs ${v.index + 1}`);
    expect(r.entryPoints).toEqual({ toy: 500 });
    expect(r.errnos.EINVAL).toBeGreaterThan(100);
  });

  it('reports a matching known bug separately and does not count it as a violation', () => {
    const bug: KnownBug = { id: 'planted', where: 'toy', summary: 'planted', matches: (v) => v.message.includes('planted') };
    const r = runCampaign(toy([bug]), { seed: 7 });
    expect(r.violations).toHaveLength(0);
    expect(r.knownBugHits.map((k) => k.knownBug)).toEqual(['planted']);
    expect(r.knownBugHits[0]!.repro).toEqual(['op(13)', 'op(42)']);
  });

  it('is deterministic per seed and differs between seeds', () => {
    const a = runCampaign(toy(), { seed: 3, shrink: false });
    const b = runCampaign(toy(), { seed: 3, shrink: false });
    const c = runCampaign(toy(), { seed: 4, shrink: false });
    expect({ ...a, ms: 0 }).toEqual({ ...b, ms: 0 });
    expect(c.errnos.EINVAL).not.toBe(a.errnos.EINVAL);
  });

  it('Weights draws each index in proportion to its weight', () => {
    const w = new Weights([1, 0, 3]);
    const rng = new Rng(11);
    const n = [0, 0, 0];
    for (let i = 0; i < 40_000; i++) n[w.pick(rng)]!++;
    expect(n[1]).toBe(0);
    expect(n[2]! / n[0]!).toBeGreaterThan(2.8);
    expect(n[2]! / n[0]!).toBeLessThan(3.2);
  });

  it('Recorder counts errnos by Linux name', () => {
    const rec = new Recorder();
    rec.ret(-22);
    rec.ret(-14);
    rec.ret(-22);
    rec.ret(3);
    expect(Object.fromEntries(rec.errnos)).toEqual({ EINVAL: 2, EFAULT: 1 });
    expect(rec.successes).toBe(1);
  });
});

function mapping(iova: number, size: number): DmaInfo {
  return { iova, size, vaddr: 0x5000_0000_0000 + iova, prot: 3, iommuMapped: true, vaddrInvalid: false, pinnedPages: 0 };
}

function world(mappings: DmaInfo[], avail: number, vectors: (number | null)[] = [], msiMsg = '0:0:0'): WorldSnap {
  return {
    fdCount: 5,
    fds: [3, 1, 4, 1],
    binding: 'vfio-pci vfio-pci 1,2',
    group: { container: 3, closed: false, devices: 1, members: 1, kernelDma: false, domain: true },
    containers: [{ fd: 3, closed: false, groups: [1], type1: { v2: true, avail, tracking: true, fullScope: true, pgsizes: '40201000', ranges: '0-7ffffff', domain: true, mappings } }],
    device: {
      open: true, irqType: 1, msiQmax: 2, vectors, err: null, req: null, ioeventfds: 0, numRegions: 9, canReset: true,
      logging: null, domain: true, vconfig: 1, config: 2, mme: 32, msiMsg, msiMask: '0:0', flrs: 1,
    },
  };
}

describe('snapshot comparison (vfio-type1-dirty.md 2 step 7, vfio_msi_set_block)', () => {
  const a = mapping(0x100000, 0x2000);
  const b = mapping(0x102000, 0x1000);
  const c = mapping(0x200000, 0x1000);

  it('an unchanged world compares equal and any other change is reported with its field', () => {
    expect(equalModulo(world([a, b], 10), world([a, b], 10), {})).toBeNull();
    expect(equalModulo(world([a, b], 10), world([a], 11), {})).toMatch(/^containers:/);
    expect(equalModulo(world([a], 10, [4, 5]), world([a], 10, [4, null]), {})).toMatch(/^device\{vectors\}/);
    expect(equalModulo(world([a], 10), world([a], 10, [], '20200040:0:40'), {})).toMatch(/^device\{msiMsg\}/);
  });

  it('an UNMAP_DMA EFAULT may keep removals inside its range, nothing outside it', () => {
    const unmapFault = { fd: 3, iova: 0x100000n, end: 0x103000n };
    expect(equalModulo(world([a, b, c], 10), world([b, c], 11), { unmapFault })).toBeNull();
    expect(equalModulo(world([a, b, c], 10), world([c], 12), { unmapFault })).toBeNull();
    // c lies outside the range: its removal is a real state change
    expect(equalModulo(world([a, b, c], 10), world([a, b], 11), { unmapFault })).not.toBeNull();
    // the freed dma slot must come back with the removal
    expect(equalModulo(world([a, b, c], 10), world([b, c], 10), { unmapFault })).not.toBeNull();
  });

  it('a failed MSI SET_IRQS may detach the vectors of its block only', () => {
    const msiBlock = { start: 1, count: 2 };
    expect(equalModulo(world([], 1, [4, 5, 6, 7]), world([], 1, [4, null, null, 7]), { msiBlock })).toBeNull();
    expect(equalModulo(world([], 1, [4, 5, 6, 7]), world([], 1, [null, 5, 6, 7]), { msiBlock })).not.toBeNull();
    expect(equalModulo(world([], 1, [4, 5]), world([], 1, [4, 5], '20200040:0:40'), { msiBlock })).not.toBeNull();
  });

  it('deepEqual tells arrays from objects and compares nested values', () => {
    expect(deepEqual({ x: [1, { y: 2 }] }, { x: [1, { y: 2 }] })).toBe(true);
    expect(deepEqual({ x: [1, { y: 2 }] }, { x: [1, { y: 3 }] })).toBe(false);
    expect(deepEqual([], {})).toBe(false);
    expect(deepEqual({ a: undefined }, {})).toBe(false);
  });
});
