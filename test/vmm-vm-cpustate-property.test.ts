/**
 * Robustness of Vm.loadCpuState against corrupted CPU state (preamble: every invalid input
 * gets an errno and leaves state untouched): a random field of a real saved state replaced
 * by a random value either loads, or fails with a KernelError leaving the VM without a guest.
 * A state that loads may break the guest, never the host: running it afterwards raises no
 * exception out of the VM (guest errors are the guest's).
 */
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { KernelError } from '../src/uapi/errno.js';
import { createTestbed } from '../src/vmm/testbed.js';
import { Vm } from '../src/vmm/vm.js';

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

function leaves(o: Json, path: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  if (o !== null && typeof o === 'object') {
    const entries = Array.isArray(o) ? o.map((v, i) => [i, v] as const) : Object.entries(o);
    for (const [k, v] of entries) leaves(v as Json, [...path, k], out);
  } else {
    out.push(path);
  }
  return out;
}

function setAt(o: Json, path: (string | number)[], v: Json): void {
  let cur = o as Record<string | number, Json>;
  for (const k of path.slice(0, -1)) cur = cur[k] as Record<string | number, Json>;
  cur[path[path.length - 1]!] = v;
}

const tb = createTestbed({ engine: 'sec', hw: 'v3', ramBytes: 16 * 2 ** 20 });
const w = tb.source.workload!;
w.pump(4);
tb.source.vm.run(1_000);
tb.source.vm.pauseVcpus();
const saved = JSON.parse(new TextDecoder().decode(tb.source.vm.saveCpuState())) as Json;
const paths = leaves(saved);
// the guest driver's fields are fewer than the ledger's: draw from both halves equally
const guestPaths = paths.filter((p) => p[0] === 'guest');
const otherPaths = paths.filter((p) => p[0] !== 'guest');
let dest: Vm = tb.dest.vm;
dest.workload = null;

afterAll(() => {
  dest.shutdown();
  tb.source.vm.shutdown();
});

const value = fc.oneof(
  fc.integer({ min: -5, max: 70000 }), fc.constant(2 ** 53), fc.double(), fc.string({ maxLength: 4 }), fc.constant(null),
  fc.boolean(), fc.constant([]), fc.constant({}),
);

describe('loadCpuState with one corrupted field', () => {
  it('either loads or fails with EINVAL and no guest; a loaded guest never breaks the host', () => {
    let loaded = 0;
    let refused = 0;
    const path = fc.oneof(fc.constantFrom(...guestPaths), fc.constantFrom(...otherPaths));
    fc.assert(fc.property(path, value, (p, v) => {
      const st = structuredClone(saved);
      setAt(st, p, v as Json);
      try {
        dest.loadCpuState(new TextEncoder().encode(JSON.stringify(st)));
      } catch (e) {
        expect(e).toBeInstanceOf(KernelError);
        expect((e as KernelError).code).toBe('EINVAL');
        expect(dest.driver).toBeNull();
        refused++;
        return;
      }
      loaded++;
      dest.resumeVcpus();
      dest.run(50_000);
      dest.pauseVcpus();
      // the next case needs a VM without a guest: re-open the VF as a fresh destination
      const { host, bdf } = dest;
      dest.shutdown();
      dest = new Vm(host, { bdf, ramBytes: 16 * 2 ** 20, boot: false });
    }), { numRuns: 100, seed: 20251122 });
    expect(refused).toBeGreaterThan(5);
    expect(loaded).toBeGreaterThan(5);
    expect(loaded + refused).toBe(100);
  });
});
