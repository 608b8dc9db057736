/**
 * The interrupt bottom half's budget (fuzz known bug eq-doorbell-livelock, guest half): a
 * device that re-raises the EQ interrupt from inside the handler's own EQ doorbell write,
 * while the ring holds no entry of the current phase, must not keep one bottom-half run
 * going forever. After BH_PASS_BUDGET passes the run ends and the rest is requeued on the
 * scheduler, so the event loop gets control back between runs.
 */
import { describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import { createBareVm } from '../src/guest/bare-vm.js';
import type { GuestPciIo } from '../src/guest/io.js';
import { BH_PASS_BUDGET } from '../src/guest/qm-vf-driver.js';

const QM_BAR = 2;
/** EQ/AEQ doorbell (qm-hardware.md 3): cmd in bits [15:12] of the low dword, EQ = 2. */
const DB_EQ_AEQ = 0x2000;
const DB_CMD_EQ = 2;
/** Ends the fake storm so that a regression fails the assertions instead of hanging. */
const RERAISE_CAP = 10_000;

interface Rig {
  armed: boolean;
  eqDoorbells: number;
  vector: number;
  handler?: (v: number) => void;
}

/** Every EQ doorbell re-raises the EQ vector synchronously, inside the MMIO write. */
function reraisingIo(rig: Rig) {
  return (io: GuestPciIo): GuestPciIo => ({
    ...io,
    onInterrupt: (cb) => {
      rig.handler = cb;
      io.onInterrupt(cb);
    },
    write64: (bar, off, lo, hi) => {
      io.write64(bar, off, lo, hi);
      if (!rig.armed || bar !== QM_BAR || off !== DB_EQ_AEQ || ((lo >>> 12) & 0xf) !== DB_CMD_EQ) return;
      if (++rig.eqDoorbells < RERAISE_CAP) rig.handler?.(rig.vector);
    },
  });
}

describe('bottom-half budget (eq-doorbell-livelock, guest side)', () => {
  it('a self-re-raising EQ interrupt ends each run after BH_PASS_BUDGET passes and requeues the rest', () => {
    const vm = createBareVm({ profile: 'sec-v3', guests: [] });
    const rig: Rig = { armed: false, eqDoorbells: 0, vector: 0 };
    const g = vm.attachGuest(1, { wrapIo: reraisingIo(rig) });
    rig.vector = g.driver.info.vectors.eq;
    vm.sched.runUntilIdle();
    expect(vm.sched.pending).toBe(0);

    rig.armed = true;
    rig.handler!(rig.vector); // the MSI: the handler only queues the bottom half
    expect(rig.eqDoorbells).toBe(0);
    expect(vm.sched.pending).toBe(1);

    expect(vm.sched.step()).toBe(true); // one bottom-half run
    expect(rig.eqDoorbells).toBe(BH_PASS_BUDGET);
    expect(vm.sched.pending).toBe(1); // the rest was requeued, once
    expect(vm.sched.step()).toBe(true);
    expect(rig.eqDoorbells).toBe(2 * BH_PASS_BUDGET);
    expect(g.driver.stats.interrupts).toBe(1 + 2 * BH_PASS_BUDGET);

    // The device calms down: the queued run drains what is pending and the loop goes idle.
    rig.armed = false;
    vm.sched.runUntilIdle();
    expect(vm.sched.pending).toBe(0);
    expect(rig.eqDoorbells).toBe(2 * BH_PASS_BUDGET);

    // The driver still completes work by interrupt afterwards.
    const key = new Uint8Array(crypto.randomBytes(16));
    const data = new Uint8Array(crypto.randomBytes(64));
    const c = crypto.createCipheriv('aes-128-ecb', key, null);
    c.setAutoPadding(false);
    const want = Buffer.concat([c.update(data), c.final()]);
    expect(Buffer.from(g.accel.encrypt('aes-128-ecb', key, new Uint8Array(0), data))).toEqual(want);
    expect(g.driver.stats.irqCqes).toBe(1);
  });
});
