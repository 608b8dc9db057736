import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { createEngine } from '../src/hw/engines/engine.js';
import * as Z from '../src/hw/engines/zip-sqe.js';
import { profileFor } from '../src/hw/firmware.js';
import type { EngineKind, HwVersion } from '../src/hw/profile.js';
import { QmDevice } from '../src/hw/qm/qm-device.js';
import { Scheduler } from '../src/sim/scheduler.js';
import { FlatMemory, GuestDriver } from './qm-harness.js';

/** The QM with the stock firmware profiles and the real engines (integration). */
describe('QM with firmware profiles and real engines', () => {
  for (const engine of ['zip', 'sec', 'hpre'] as EngineKind[]) {
    for (const hw of ['v2', 'v3', 'v4'] as HwVersion[]) {
      it(`${engine}-${hw}: probe registers, VFT and one job end to end`, () => {
        const profile = profileFor(engine, hw);
        const sched = new Scheduler();
        const dev = new QmDevice({ profile, scheduler: sched, engine: createEngine(engine) });
        dev.addVf(1);
        dev.applyDefaultVft(1);
        const mem = new FlatMemory();
        const msi: number[] = [];
        const vf = dev.vf(1)!;
        vf.attach({ dma: mem, msi: (v) => msi.push(v) });
        expect(vf.bar2.read(0x3100, 4, 'guest')).toBe(hw === 'v2' ? 0 : 0x6f01);
        expect(vf.bar2.read(0x210, 4, 'guest')).toBe(hw === 'v4' ? 0x50 : 0);
        expect(vf.qpBase).toBe(engine === 'sec' ? 256 : 64);
        expect(vf.qpNum).toBe(engine === 'sec' ? 768 : 960);
        const g = new GuestDriver(vf, mem, sched);
        expect(g.L.sqeSize).toBe(engine === 'hpre' ? 64 : 128);
        g.start();
        g.startQp(0, { algType: 0 });
        const input = new TextEncoder().encode('hisi-acc-sim '.repeat(200));
        const src = g.scratch;
        const dst = g.scratch + 0x4000;
        mem.put(src, input);
        if (engine === 'zip') {
          g.submit(0, 0x51, (v) => {
            v.setUint32(Z.ZIP_INPUT_DATA_LENGTH, input.length, true);
            v.setUint32(Z.ZIP_DW9, Z.ZIP_REQ_DEFLATE | (Z.ZIP_BUF_FLAT << Z.ZIP_BUF_TYPE_SHIFT), true);
            v.setUint32(Z.ZIP_DEST_AVAIL_OUT, 0x4000, true);
            v.setUint32(Z.ZIP_SOURCE_ADDR_L, src % 2 ** 32, true);
            v.setUint32(Z.ZIP_SOURCE_ADDR_H, Math.floor(src / 2 ** 32), true);
            v.setUint32(Z.ZIP_DEST_ADDR_L, dst % 2 ** 32, true);
            v.setUint32(Z.ZIP_DEST_ADDR_H, Math.floor(dst / 2 ** 32), true);
          });
        } else {
          g.submit(0, 0x51); // an all-zero SQE: the engine reports an error in it, the QM completes it
        }
        sched.runUntilIdle();
        const cqes = g.consumeCq(0);
        expect(cqes.map((c) => [c.sqHead, c.sqNum])).toEqual([[0, 0]]);
        expect(msi).toEqual([0]);
        if (engine === 'zip') {
          const sqe = g.sqRing(0);
          expect(mem.u8(sqe + Z.ZIP_DW3)).toBe(0);
          expect(mem.u32(sqe + Z.ZIP_CONSUMED)).toBe(input.length);
          const produced = mem.u32(sqe + Z.ZIP_PRODUCED);
          expect(Buffer.from(inflateRawSync(mem.get(dst, produced))).equals(Buffer.from(input))).toBe(true);
          expect(vf.debugSnapshot().recentTags).toEqual([0x51]);
        } else {
          expect(vf.debugSnapshot().queues.engineErrors).toBe(1);
        }
      });
    }
  }
});
