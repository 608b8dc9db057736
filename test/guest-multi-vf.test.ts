/**
 * Several VFs of one device, each driven by its own guest (own RAM, own IOMMU domain), working
 * at the same time on the shared scheduler and mailbox engine without seeing each other.
 */
import { describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import * as zlib from 'node:zlib';
import { createBareVm } from '../src/guest/bare-vm.js';
import type { JobResult } from '../src/guest/accel.js';

describe('multiple VFs concurrently', () => {
  it('interleaved pipelined jobs on 3 ZIP VFs all come back right, each in its own guest', () => {
    const vm = createBareVm({
      profile: 'zip-v3', numVfs: 3, guests: [1, 2, 3], latencies: { processNs: 2_000, mailboxNs: 1_000 },
      driver: { sqDepth: 8 },
    });
    const inputs = new Map<string, Uint8Array>();
    const results = new Map<string, JobResult>();
    for (const g of vm.guests) g.accel.onComplete((t, r) => results.set(`${g.vfIndex}:${t}`, r));
    for (let round = 0; round < 20; round++) {
      for (const g of vm.guests) {
        const data = new Uint8Array(Buffer.from(`vf${g.vfIndex} round ${round} `.repeat(30 + round)));
        const t = g.accel.submitJob({ op: 'compress', format: round % 2 ? 'gzip' : 'zlib', data });
        inputs.set(`${g.vfIndex}:${t}`, data);
      }
    }
    for (const g of vm.guests) g.accel.drain();
    expect(results.size).toBe(60);
    for (const [k, r] of results) {
      expect(r.ok).toBe(true);
      if (!r.ok) continue;
      const out = Buffer.from(r.output);
      const back = out[0] === 0x1f ? zlib.gunzipSync(out) : zlib.inflateSync(out);
      expect(back.equals(Buffer.from(inputs.get(k)!))).toBe(true);
    }
    for (const g of vm.guests) {
      expect(g.domain!.faultCount).toBe(0);
      expect(g.driver.stats.spuriousEqes).toBe(0);
      expect(g.driver.qp(0)!.stats.spurious).toBe(0);
      expect(g.driver.stats.irqCqes).toBe(20);
    }
    // each VF's EQ lives in its own guest RAM
    const bases = vm.guests.map((g) => vm.device.qm.vf(g.vfIndex)!.debugSnapshot().eq.base);
    for (const [i, g] of vm.guests.entries()) expect(g.mem.isZero(bases[i]!, 4)).toBe(false);
  });

  it('a reset of one VF does not disturb its neighbour', () => {
    const vm = createBareVm({ profile: 'sec-v3', numVfs: 2, guests: [1, 2], latencies: { processNs: 10_000 } });
    const key = new Uint8Array(crypto.randomBytes(16));
    const data = new Uint8Array(crypto.randomBytes(64));
    const expected = (() => {
      const c = crypto.createCipheriv('aes-128-ecb', key, null);
      c.setAutoPadding(false);
      return Buffer.concat([c.update(data), c.final()]);
    })();
    const job = { op: 'encrypt' as const, alg: 'aes-128-ecb', key, iv: new Uint8Array(0), data };
    const t2 = Array.from({ length: 5 }, () => vm.guest(2).accel.submitJob(job));
    Array.from({ length: 5 }, () => vm.guest(1).accel.submitJob(job));
    vm.guest(1).driver.flr();
    vm.guest(2).accel.drain();
    for (const t of t2) {
      const r = vm.guest(2).accel.result(t)!;
      expect(r.ok && Buffer.from(r.output).equals(expected)).toBe(true);
    }
    expect(vm.guest(2).vf.stats.flrs).toBe(0);
    expect(vm.guest(1).vf.stats.flrs).toBe(1);
    expect(Buffer.from(vm.guest(1).accel.encrypt('aes-128-ecb', key, new Uint8Array(0), data)).equals(expected)).toBe(true);
  });
});
