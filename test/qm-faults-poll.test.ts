/**
 * Fault switches for the last polled status registers (faults.ts): a pending IFC interrupt that
 * never clears (QM_IFC_INT_STATUS 0x28 / QM_IFC_INT_SET_V 0x2C, qm-hardware.md section 1 and
 * hisi-acc-vfio-pci.md section 4: both must read 0 before a save) and a VFT configuration block
 * that never reports ready (QM_VFT_CFG_RDY 0x10006C, qm-hardware.md section 4).
 */
import { describe, expect, it } from 'vitest';
import { hisiQmPfOf } from '../src/drivers/hisi-qm/pf-driver.js';
import { POLL_TIMEOUT_NS } from '../src/drivers/common/qm-regs.js';
import { Host } from '../src/host/host.js';
import { Errno, KernelError } from '../src/uapi/errno.js';
import { ZIP_PF, rawVftRead, sqcWord } from './host-helpers.js';
import { makeRig } from './qm-harness.js';

const IFC_INT_SOURCE_V = 0x20;
const IFC_INT_MASK = 0x24;
const IFC_INT_STATUS = 0x28;
const IFC_INT_SET_V = 0x2c;
const IFC_INT_SOURCE_P = 0x100138;
const VFT_CFG_RDY = 0x10006c;

function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
  return 0;
}

describe('ifcStatusStuck: an IFC interrupt that never clears (qm-hardware.md section 1, 0x28 / 0x2C)', () => {
  it('"status" holds 0x28 bit0 at 1 (masked or not), "set-v" holds 0x2C; other VFs and the PF side see nothing', () => {
    const r = makeRig({ numVfs: 2 });
    const vf1 = r.fn(1).bar2;
    const vf2 = r.fn(2).bar2;
    const pf = r.dev.pf.bar2;
    expect([vf1.read(IFC_INT_STATUS, 4, 'driver'), vf1.read(IFC_INT_SET_V, 4, 'driver')]).toEqual([0, 0]);

    r.fn(1).faults.setIfcStatusStuck('status');
    expect(r.fn(1).faults.ifcStatusStuck).toBe('status');
    expect([vf1.read(IFC_INT_STATUS, 4, 'driver'), vf1.read(IFC_INT_SET_V, 4, 'driver')]).toEqual([1, 0]);
    vf1.write(IFC_INT_MASK, 4, 1, 'guest'); // masking the vector does not hide a stuck status
    expect(vf1.read(IFC_INT_STATUS, 4, 'driver')).toBe(1);
    vf1.write(IFC_INT_MASK, 4, 0, 'guest');
    vf1.write(IFC_INT_SOURCE_V, 4, 1, 'guest'); // an ack does not clear it either
    expect(vf1.read(IFC_INT_STATUS, 4, 'driver')).toBe(1);

    r.fn(1).faults.setIfcStatusStuck('set-v');
    expect([vf1.read(IFC_INT_STATUS, 4, 'driver'), vf1.read(IFC_INT_SET_V, 4, 'driver')]).toEqual([0, 1]);
    r.fn(1).faults.setIfcStatusStuck(true);
    expect(r.fn(1).faults.ifcStatusStuck).toBe('both');
    expect([vf1.read(IFC_INT_STATUS, 4, 'guest'), vf1.read(IFC_INT_SET_V, 4, 'guest')]).toEqual([1, 1]);

    // per function, and a read-side fault only: no VF->PF interrupt is latched or raised
    expect([vf2.read(IFC_INT_STATUS, 4, 'driver'), vf2.read(IFC_INT_SET_V, 4, 'driver')]).toEqual([0, 0]);
    expect(pf.read(IFC_INT_SOURCE_P, 4, 'pf')).toBe(0);
    expect(r.msi.get(0)).toEqual([]);

    r.fn(1).faults.clearAll();
    expect(r.fn(1).faults.ifcStatusStuck).toBe('none');
    expect([vf1.read(IFC_INT_STATUS, 4, 'driver'), vf1.read(IFC_INT_SET_V, 4, 'driver')]).toEqual([0, 0]);
  });

  it('the real VF->PF bit still works under the fault and shows again once the fault is lifted (until the PF acks)', () => {
    const r = makeRig({ numVfs: 1 });
    const vf = r.fn(1).bar2;
    const pf = r.dev.pf.bar2;
    r.fn(1).faults.setIfcStatusStuck('set-v');
    vf.write(IFC_INT_SET_V, 4, 1, 'guest'); // VF interrupts the PF (section 5)
    expect(pf.read(IFC_INT_SOURCE_P, 4, 'pf')).toBe(1 << 1); // bit n = VF n
    r.fn(1).faults.setIfcStatusStuck(false);
    expect(vf.read(IFC_INT_SET_V, 4, 'driver')).toBe(1); // genuinely pending
    pf.write(IFC_INT_SOURCE_P, 4, 1 << 1, 'pf'); // PF acks (W1C)
    expect(vf.read(IFC_INT_SET_V, 4, 'driver')).toBe(0);
  });

  it('on the PF only 0x28 exists (0x2C is a VF register); on V2 neither does (IFC is V3+)', () => {
    const r = makeRig({ numVfs: 1 });
    r.fn(0).faults.setIfcStatusStuck('both');
    expect([r.dev.pf.bar2.read(IFC_INT_STATUS, 4, 'pf'), r.dev.pf.bar2.read(IFC_INT_SET_V, 4, 'pf')]).toEqual([1, 0]);
    const v2 = makeRig({ hw: 'v2', numVfs: 1 });
    v2.fn(1).faults.setIfcStatusStuck('both');
    expect([v2.fn(1).bar2.read(IFC_INT_STATUS, 4, 'driver'), v2.fn(1).bar2.read(IFC_INT_SET_V, 4, 'driver')]).toEqual([0, 0]);
  });

  it('set from the fault tap at a status read, it applies to that very read (the matrix\'s use)', () => {
    const r = makeRig({ numVfs: 1 });
    const fn = r.fn(1);
    const seen: number[] = [];
    r.dev.faults.tap = (ev) => {
      if (ev.kind !== 'status-read') return;
      seen.push(ev.reg);
      if (ev.reg === IFC_INT_SET_V) fn.faults.setIfcStatusStuck('set-v');
    };
    expect(fn.bar2.read(IFC_INT_STATUS, 4, 'driver')).toBe(0);
    expect(fn.bar2.read(IFC_INT_SET_V, 4, 'driver')).toBe(1);
    expect(seen).toEqual([IFC_INT_STATUS, IFC_INT_SET_V]);
  });
});

describe('vftNotReady: QM_VFT_CFG_RDY never reads ready (qm-hardware.md section 4)', () => {
  function rig() {
    const h = new Host({ devices: ['zip-v3'] });
    const qm = hisiQmPfOf(h.device(ZIP_PF)!)!;
    const dev = h.accelerators[0]!.qm;
    return { h, qm, dev, fn: h.device(ZIP_PF)!.fn };
  }

  it('RDY bit0 reads 0; the PF driver\'s VFT read polls for the full timeout and fails with ETIMEDOUT; lifted, it works', () => {
    const { h, qm, dev } = rig();
    qm.vftWrite(5, 0, 100, 7);
    const pf = dev.pf.bar2;
    expect(pf.read(VFT_CFG_RDY, 4, 'pf')).toBe(1);
    dev.faults.setVftNotReady(true);
    expect(dev.faults.vftNotReady).toBe(true);
    expect(pf.read(VFT_CFG_RDY, 4, 'pf')).toBe(0);
    const t0 = h.scheduler.now;
    expect(errnoOf(() => qm.vftRead(5, 0))).toBe(Errno.ETIMEDOUT);
    expect(h.scheduler.now - t0).toBeGreaterThanOrEqual(POLL_TIMEOUT_NS);
    // the device's own VFT helper refuses at once
    expect(errnoOf(() => dev.readVft(5))).toBe(Errno.EBUSY);
    dev.faults.clearAll();
    expect(dev.faults.vftNotReady).toBe(false);
    const w = sqcWord(100, 7);
    expect(qm.vftRead(5, 0)).toEqual({ lo: Number(w & 0xffffffffn), hi: Number(w >> 32n) });
  });

  it('fired at the poll after OP_ENABLE: the access already happened, only its completion is never seen', () => {
    const { qm, dev, fn } = rig();
    let rdyPolls = 0;
    dev.faults.tap = (ev) => {
      if (ev.kind === 'status-read' && ev.reg === VFT_CFG_RDY && ++rdyPolls === 2) dev.faults.setVftNotReady(true);
    };
    expect(errnoOf(() => qm.vftWrite(6, 0, 200, 3))).toBe(Errno.ETIMEDOUT);
    dev.faults.tap = null;
    dev.faults.setVftNotReady(false);
    expect(rawVftRead(fn, 6, 0)).toBe(sqcWord(200, 3));
  });
});
