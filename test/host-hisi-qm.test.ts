/**
 * The host PF QM driver (hisi_zip / hisi_sec2 / hisi_hpre + hisi_qm): probe state, the PF
 * register protocols (qm-hardware.md 2 mailbox, 4 VFT, 5 IFC), version handling (7) and
 * hisi_qm_get_pf_qm semantics (hisi-acc-vfio-pci.md 1).
 */
import { describe, expect, it } from 'vitest';
import { Host } from '../src/host/host.js';
import { loadProfile } from '../src/hw/firmware.js';
import type { MmioRegion } from '../src/hw/mmio.js';
import { PciPf } from '../src/hw/pci/pf.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../src/hw/pci/regs.js';
import {
  createHisiQmPfDriver, getPfQm, hisiQmPfOf,
} from '../src/drivers/hisi-qm/pf-driver.js';
import { HisiQmPf } from '../src/drivers/hisi-qm/qm-pf.js';
import { planVfQueues } from '../src/drivers/hisi-qm/vf-queues.js';
import { Errno, KernelError } from '../src/uapi/errno.js';
import {
  CQC_WORD, HPRE_PF, SEC_PF, ZIP_PF, dev, drvDir, fakeDriver, rawMailbox, rawVftRead, sqcWord, vfBdf,
} from './host-helpers.js';

function errnoOf(fn: () => unknown): number {
  try {
    fn();
  } catch (e) {
    if (e instanceof KernelError) return e.errno;
    throw e;
  }
  return 0;
}

function qmOf(h: Host, bdf: string): HisiQmPf {
  const qm = hisiQmPfOf(h.device(bdf)!);
  if (!qm) throw new Error(`no PF QM state at ${bdf}`);
  return qm;
}

const PF_OF: Record<string, string> = { zip: ZIP_PF, sec: SEC_PF, hpre: HPRE_PF };

describe('probe (spec 7 versions, spec 4 PF VFT)', () => {
  const cases: [string, number, number, number][] = [
    // profile, qm->ver, caps, pf_q_num
    ['zip-v2', 0x21, 0, 64], ['sec-v2', 0x21, 0, 256], ['hpre-v2', 0x21, 0, 64],
    ['zip-v3', 0x30, 0x6f01, 64], ['sec-v3', 0x30, 0x6f01, 256], ['hpre-v3', 0x30, 0x6f01, 64],
    ['zip-v4', 0x50, -1, 64], ['sec-v4', 0x50, -1, 256], ['hpre-v4', 0x50, -1, 64],
  ];
  for (const [profile, ver, caps, pfq] of cases) {
    it(`${profile}: version 0x${ver.toString(16)}, 1024 queues, PF VFT base 0 num ${pfq}, memory+master+MSI on`, () => {
      const h = new Host({ devices: [profile] });
      const engine = profile.split('-')[0]!;
      const bdf = PF_OF[engine]!;
      const d = h.device(bdf)!;
      expect(d.driver?.name).toBe({ zip: 'hisi_zip', sec: 'hisi_sec2', hpre: 'hisi_hpre' }[engine]);
      const qm = qmOf(h, bdf);
      expect(qm.engine).toBe(engine);
      expect(qm.ver).toBe(ver);
      if (caps >= 0) expect(qm.caps).toBe(caps);
      else expect(qm.caps).toBe(loadProfile(profile).caps.funcCaps);
      expect(qm.ctrlQpNum).toBe(1024);
      expect(qm.maxQpNum).toBe(1024);
      expect(qm.qpNum).toBe(pfq);
      expect(rawVftRead(d.fn, 0, 0)).toBe(sqcWord(0, pfq));
      expect(rawVftRead(d.fn, 0, 1)).toBe(CQC_WORD);
      expect(qm.vftOf(0)).toEqual({ base: 0, num: pfq });
      expect(qm.mailboxOwnVft()).toEqual({ base: 0, num: pfq });
      const cmd = d.fn.configRead(PCI_COMMAND, 2);
      expect(cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)).toBe(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
      expect(d.fn.msi.enabledVectors).toBe(4);
      expect(qm.supportsIfc).toBe(ver >= 0x30);
    });
  }

  it('revision 0x30 with a non-zero QM_SUB_VERSION_ID takes the sub version', () => {
    const p = structuredClone(loadProfile('zip-v3'));
    p.pci.subVersionId = 0x50;
    const h = new Host({ devices: [{ profile: p }] });
    const qm = qmOf(h, ZIP_PF);
    expect(qm.revision).toBe(0x30);
    expect(qm.ver).toBe(0x50);
  });

  it('cap_ver 0 in QM_FUNC_CAPS_REG means the V3 defaults (0x6F01)', () => {
    const p = structuredClone(loadProfile('zip-v3'));
    p.caps.funcCaps = 0x0800;
    expect(qmOf(new Host({ devices: [{ profile: p }] }), ZIP_PF).caps).toBe(0x6f01);
  });

  it('pf_q_num out of range makes probe fail with EINVAL; the PF stays unbound and not mastering', () => {
    const h = new Host({ devices: ['zip-v3'], pfDriver: { pfQNum: { zip: 1 } } });
    const d = h.device(ZIP_PF)!;
    expect(d.driver).toBeUndefined();
    expect(h.bus.log.includes('probe with driver hisi_zip failed with error -22')).toBe(true);
    expect(d.fn.configRead(PCI_COMMAND, 2) & PCI_COMMAND_MASTER).toBe(0);
    expect(h.sysfsWrite(`${drvDir('hisi_zip')}/bind`, ZIP_PF)).toBe(-Errno.EINVAL);
    expect(new Host({ devices: ['zip-v3'], pfDriver: { pfQNum: { zip: 1025 } } }).device(ZIP_PF)!.driver).toBeUndefined();
  });
});

describe('queue split (qm_vf_q_assign, spec 4)', () => {
  it('hand-computed splits, programming order VF n first', () => {
    expect(planVfQueues(1024, 64, 1024, 3)).toEqual([
      { vf: 3, base: 64, num: 320 }, { vf: 2, base: 384, num: 320 }, { vf: 1, base: 704, num: 320 },
    ]);
    // 960 = 63 * 15 + 15: VF63 takes 15 + 15.
    const all = planVfQueues(1024, 64, 1024, 63);
    expect(all[0]).toEqual({ vf: 63, base: 64, num: 30 });
    expect(all[62]).toEqual({ vf: 1, base: 1024 - 15, num: 15 });
    // Remainder above the cap: spread one by one over the first VFs served.
    expect(planVfQueues(1024, 64, 481, 2)).toEqual([{ vf: 2, base: 64, num: 480 }, { vf: 1, base: 544, num: 480 }]);
    expect(planVfQueues(1000, 0, 334, 3)).toEqual([
      { vf: 3, base: 0, num: 334 }, { vf: 2, base: 334, num: 333 }, { vf: 1, base: 667, num: 333 },
    ]);
    expect(planVfQueues(1001, 0, 334, 3)).toEqual([
      { vf: 3, base: 0, num: 334 }, { vf: 2, base: 334, num: 334 }, { vf: 1, base: 668, num: 333 },
    ]);
    expect(errnoOf(() => planVfQueues(1024, 1020, 1024, 5))).toBe(Errno.EINVAL);
    expect(errnoOf(() => planVfQueues(1024, 64, 1024, 0))).toBe(Errno.EINVAL);
  });

  it('sriovEnable: ERANGE above 63 VFs; 0 (and a log line) when VFs already exist', () => {
    const h = new Host({ devices: ['zip-v3'] });
    const qm = qmOf(h, ZIP_PF);
    expect(errnoOf(() => qm.sriovEnable(64))).toBe(Errno.ERANGE);
    expect(qm.sriovEnable(2)).toBe(2);
    expect(qm.vfsNum).toBe(2);
    expect(qm.sriovEnable(3)).toBe(0);
    expect(h.bus.log.includes('2 VFs already enabled')).toBe(true);
    expect(qm.vftOf(1)).toEqual({ base: 544, num: 480 });
    expect(qm.getVft(2)).toEqual({ base: 64, num: 480 });
    expect(qm.sriovDisable()).toBe(0);
    expect(qm.getVft(1)).toEqual({ base: 0, num: 0 });
    expect(qm.vftOf(1)).toBeUndefined();
  });
});

describe('VFT register protocol (spec 4)', () => {
  it('vftWrite/vftRead round trip through the PF registers; raw shaper words are stored', () => {
    const h = new Host({ devices: ['zip-v3'] });
    const qm = qmOf(h, ZIP_PF);
    const pf = h.device(ZIP_PF)!.fn;
    qm.vftWrite(5, 0, 100, 7);
    expect(rawVftRead(pf, 5, 0)).toBe(sqcWord(100, 7));
    expect(qm.vftRead(5, 0)).toEqual({ lo: Number(sqcWord(100, 7) & 0xffffffffn), hi: Number(sqcWord(100, 7) >> 32n) });
    qm.vftWrite(5, 1, 100, 7);
    expect(rawVftRead(pf, 5, 1)).toBe(CQC_WORD);
    qm.vftWrite(5, 0, 0, 0);
    expect(rawVftRead(pf, 5, 0)).toBe(0n);
    qm.vftWriteRaw(5, 2, { lo: 0x12345678, hi: 0x9abc });
    expect(rawVftRead(pf, 5, 2)).toBe(0x9abc12345678n);
  });

  it('argument errors are EINVAL and write nothing', () => {
    const h = new Host({ devices: ['zip-v3'] });
    const qm = qmOf(h, ZIP_PF);
    const writes = qm.stats.vftWrites;
    expect(errnoOf(() => qm.vftWrite(64, 0, 0, 1))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.vftWrite(-1, 0, 0, 1))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.vftWrite(1, 3, 0, 1))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.vftWrite(1, 2, 0, 1))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.vftWrite(1, 0, 0x10000, 1))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.vftWrite(1, 0, 0, 1025))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.vftRead(1, 7))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.readReg(0x401))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.readReg(0x400000))).toBe(Errno.EINVAL);
    expect(qm.stats.vftWrites).toBe(writes);
  });

  /** A PF BAR2 whose VFT_CFG_RDY never rises again once cleared (or is never set). */
  class StuckVftBar implements MmioRegion {
    readonly size = 0x400000;
    rdy: number;
    constructor(initialRdy: number) {
      this.rdy = initialRdy;
    }
    read(off: number): number {
      if (off === 0x100158) return 1024 | (1024 << 11);
      if (off === 0x3100) return 0x6f01;
      if (off === 0x311c) return 0x40003;
      if (off === 0x10006c) return this.rdy;
      return 0;
    }
    write(off: number, _size: number, v: number): void {
      if (off === 0x10006c) this.rdy = v & 1;
    }
    read64(): [number, number] {
      return [0, 0];
    }
    write64(): void {}
  }

  for (const initial of [0, 1]) {
    it(`RDY ${initial ? 'never returning' : 'never set'}: ETIMEDOUT after the 1 ms poll budget`, () => {
      const h = new Host({ pfDriver: false });
      const pf = new PciPf(loadProfile('zip-v3'), ZIP_PF);
      pf.attachBar(2, new StuckVftBar(initial));
      const d = h.bus.addDevice(pf);
      d.enableMemoryAndMaster();
      const qm = new HisiQmPf(d, 'zip');
      const t0 = h.scheduler.now;
      expect(errnoOf(() => qm.setVft(1, 64, 8))).toBe(Errno.ETIMEDOUT);
      const waited = h.scheduler.now - t0;
      expect(waited).toBeGreaterThan(1_000_000);
      expect(waited).toBeLessThanOrEqual(1_020_000);
      expect(qm.vftOf(1)).toBeUndefined();
    });
  }

  it('probe fails with ETIMEDOUT when the PF VFT cannot be programmed', () => {
    const h = new Host({ pfDriver: false });
    const pf = new PciPf(loadProfile('zip-v3'), ZIP_PF);
    pf.attachBar(2, new StuckVftBar(0));
    const d = h.bus.addDevice(pf);
    expect(h.registerDriver(createHisiQmPfDriver('zip'))).toBe(0);
    expect(d.driver).toBeUndefined();
    expect(h.bus.log.includes('failed with error -110')).toBe(true);
    expect(d.fn.msi.enabled).toBe(false);
  });
});

describe('PF mailbox (spec 2 busy/status protocol)', () => {
  it('an undefined command completes with a non-zero status: EIO', () => {
    const h = new Host({ devices: ['zip-v3'] });
    expect(errnoOf(() => qmOf(h, ZIP_PF).mailbox(0x7, 0, 0, 0))).toBe(Errno.EIO);
  });

  it('busy time within the 1 ms budget is waited for on simulated time', () => {
    const h = new Host({ devices: [{ profile: 'zip-v3', latencies: { mailboxNs: 500_000 } }] });
    const qm = qmOf(h, ZIP_PF);
    const t0 = h.scheduler.now;
    expect(qm.mailboxOwnVft()).toEqual({ base: 0, num: 64 });
    expect(h.scheduler.now - t0).toBeGreaterThanOrEqual(500_000);
  });

  it('a hung mailbox: ETIMEDOUT, then EBUSY while still busy, then recovery once it completes', () => {
    const h = new Host({ devices: ['zip-v3'] });
    const qm = qmOf(h, ZIP_PF);
    const acc = h.accelerator(ZIP_PF)!;
    acc.qm.faults.setMailboxHang(true);
    expect(errnoOf(() => qm.mailboxOwnVft())).toBe(Errno.ETIMEDOUT);
    expect(errnoOf(() => qm.mailboxOwnVft())).toBe(Errno.EBUSY);
    acc.qm.faults.setMailboxHang(false);
    h.scheduler.runUntilIdle();
    expect(qm.mailboxOwnVft()).toEqual({ base: 0, num: 64 });
    expect(qm.stats.mailboxFailures).toBe(2);
  });

  it('argument errors: EINVAL', () => {
    const qm = qmOf(new Host({ devices: ['zip-v3'] }), ZIP_PF);
    expect(errnoOf(() => qm.mailbox(0x100, 0, 0, 0))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.mailbox(0, 0x10000, 0, 0))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.mailbox(0, 0, 1n << 64n, 0))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.mailbox(0, 0, -1, 0))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.mailbox(0, 0, 0, 2 as 0))).toBe(Errno.EINVAL);
  });
});

describe('PF-only controls', () => {
  it('QM_QUE_ISO_CFG follows the device setting', () => {
    expect(qmOf(new Host({ devices: ['zip-v3'] }), ZIP_PF).queIsoCfg()).toBe(0);
    expect(qmOf(new Host({ devices: [{ profile: 'zip-v3', doorbellIsolation: true }] }), ZIP_PF).queIsoCfg() & 1).toBe(1);
  });

  it('V4 QM_MIG_REGION_SEL moves the VF migration half into the PF (VF upper half reads all-ones)', () => {
    const h = new Host({ devices: ['zip-v4'] });
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '1');
    const qm = qmOf(h, ZIP_PF);
    const vf = h.device(vfBdf(ZIP_PF, 1))!.fn;
    expect(qm.migRegionInPf).toBe(false);
    expect(vf.mmioRead(2, 0x8018, 4, 'test')).not.toBe(0xffffffff);
    qm.setMigRegionSel(true);
    expect(qm.migRegionInPf).toBe(true);
    expect(h.device(ZIP_PF)!.fn.mmioRead(2, 0x100198, 4, 'test') & 1).toBe(1);
    expect(vf.mmioRead(2, 0x8018, 4, 'test')).toBe(0xffffffff);
    qm.setMigRegionSel(false);
    expect(qm.migRegionInPf).toBe(false);
  });

  it('QM_MIG_REGION_SEL before V4: EOPNOTSUPP', () => {
    const qm = qmOf(new Host({ devices: ['zip-v3'] }), ZIP_PF);
    expect(errnoOf(() => qm.setMigRegionSel(true))).toBe(Errno.EOPNOTSUPP);
    expect(qm.migRegionInPf).toBe(false);
  });
});

describe('PF side of IFC (spec 5)', () => {
  function ifcHost(vfs: number) {
    const h = new Host({ devices: ['zip-v3'] });
    expect(h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, String(vfs))).toBe(0);
    const qm = qmOf(h, ZIP_PF);
    const vf = (n: number) => h.device(vfBdf(ZIP_PF, n))!.fn;
    return { h, qm, vf };
  }

  /** The VF side of VF->PF: mailbox SRC to queue 0, then QM_IFC_INT_SET_V |= 1. */
  function vfSend(vf: ReturnType<ReturnType<typeof ifcHost>['vf']>, cmd: number, data: number): void {
    const r = rawMailbox(vf, 0xc, 0, cmd, data, 0);
    expect((r.w0 >> 9) & 0xf).toBe(0);
    vf.mmioWrite(2, 0x2c, 4, vf.mmioRead(2, 0x2c, 4, 'test') | 1, 'test');
  }

  it('a VF message raises the PF vector; deferred work fetches it with DST and acks both sides', () => {
    const { h, qm, vf } = ifcHost(2);
    vfSend(vf(2), 4 /* VF_PREPARE_DONE */, 0x1234);
    expect(vf(2).mmioRead(2, 0x2c, 4, 'test') & 1).toBe(1);
    expect(h.device(ZIP_PF)!.fn.mmioRead(2, 0x100138, 4, 'test')).toBe(1 << 2);
    expect(qm.ifc.stats.interrupts).toBe(1);
    expect(qm.ifc.received).toEqual([]); // nothing runs inside the interrupt
    h.scheduler.runUntilIdle();
    expect(qm.ifc.received).toMatchObject([{ vf: 2, cmd: 4, data: 0x1234 }]);
    expect(vf(2).mmioRead(2, 0x2c, 4, 'test') & 1).toBe(0);
    expect(h.device(ZIP_PF)!.fn.mmioRead(2, 0x100138, 4, 'test')).toBe(0);
  });

  it('VF_GET_QOS is answered with PF_SET_QOS carrying the maximum (1000)', () => {
    const { h, qm, vf } = ifcHost(1);
    const got: { lo: number; hi: number }[] = [];
    vfSend(vf(1), 9 /* VF_GET_QOS */, 0);
    // The guest side: on the PF's message, read it with DST (queue 0) and ack 0x20.
    h.scheduler.schedule(5_000_000, () => {
      expect(vf(1).mmioRead(2, 0x20, 4, 'test') & 1).toBe(1);
      const r = rawMailbox(vf(1), 0xd, 0, 0, 0, 1);
      got.push({ lo: r.lo, hi: r.hi });
      vf(1).mmioWrite(2, 0x20, 4, 1, 'test');
    });
    h.scheduler.runUntilIdle();
    expect(got).toEqual([{ lo: 8, hi: 1000 }]);
    expect(qm.ifc.stats.sent).toBe(1);
    expect(qm.ifc.stats.sendTimeouts).toBe(0);
  });

  it('sendToVf without an ack: ETIMEDOUT after 11 sleeps of 10 ms', () => {
    const { h, qm, vf } = ifcHost(1);
    const t0 = h.scheduler.now;
    expect(errnoOf(() => qm.ifc.sendToVf(1, 1 /* PF_FLR_PREPARE */, 0))).toBe(Errno.ETIMEDOUT);
    expect(h.scheduler.now - t0).toBe(110_000_000);
    // The message is there for the VF all the same.
    expect(rawMailbox(vf(1), 0xd, 0, 0, 0, 1)).toMatchObject({ lo: 1, hi: 0 });
  });

  it('sendToAllVfs waits until every VF acked', () => {
    const { h, qm, vf } = ifcHost(2);
    const got: number[][] = [];
    for (const n of [1, 2]) {
      h.scheduler.schedule(3_000_000 * n, () => {
        const r = rawMailbox(vf(n), 0xd, 0, 0, 0, 1);
        got.push([n, r.lo, r.hi]);
        vf(n).mmioWrite(2, 0x20, 4, 1, 'test');
      });
    }
    qm.ifc.sendToAllVfs(3 /* PF_RESET_DONE */, 77);
    expect(got).toEqual([[1, 3, 77], [2, 3, 77]]);
  });

  it('argument and capability errors', () => {
    const { qm } = ifcHost(1);
    expect(errnoOf(() => qm.ifc.sendToVf(2, 1, 0))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.ifc.sendToVf(0, 1, 0))).toBe(Errno.EINVAL);
    expect(errnoOf(() => qm.ifc.sendToVf(1, 2 ** 32, 0))).toBe(Errno.EINVAL);
    const v2 = new Host({ devices: ['zip-v2'] });
    v2.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '1');
    const q2 = qmOf(v2, ZIP_PF);
    expect(errnoOf(() => q2.ifc.sendToVf(1, 1, 0))).toBe(Errno.EOPNOTSUPP);
    expect(errnoOf(() => q2.ifc.process())).toBe(Errno.EOPNOTSUPP);
  });
});

describe('getPfQm (hisi_acc_get_pf_qm)', () => {
  it('a VF of a bound PF gets the PF state; the PF itself and unrelated devices get undefined', () => {
    const h = new Host({ devices: ['zip-v3'] });
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '2');
    const vf = h.device(vfBdf(ZIP_PF, 2))!;
    expect(getPfQm(vf)).toBe(h.device(ZIP_PF)!.drvdata);
    expect(getPfQm(vf)).toBeInstanceOf(HisiQmPf);
    expect(getPfQm(h.device(ZIP_PF)!)).toBeUndefined();
  });

  it('undefined when the PF has no driver, or a driver other than the matching hisi one', () => {
    const h = new Host({ devices: ['zip-v3'], pfDriver: false });
    h.bus.enableSriov(h.device(ZIP_PF)!, 1);
    const vf = h.device(vfBdf(ZIP_PF, 1))!;
    expect(getPfQm(vf)).toBeUndefined();
    h.registerDriver(fakeDriver('impostor', [{ vendor: 0x19e5, device: 0xa250 }]));
    expect(h.device(ZIP_PF)!.driver?.name).toBe('impostor');
    expect(getPfQm(vf)).toBeUndefined();
    // The SEC driver bound to a ZIP PF through driver_override is still the wrong driver.
    h.sysfsWrite(`${drvDir('impostor')}/unbind`, ZIP_PF);
    h.registerDriver(createHisiQmPfDriver('sec'));
    h.sysfsWrite(`${dev(ZIP_PF)}/driver_override`, 'hisi_sec2');
    expect(h.sysfsWrite(`${drvDir('hisi_sec2')}/bind`, ZIP_PF)).toBe(0);
    expect(getPfQm(vf)).toBeUndefined();
  });

  it('unbinding the PF driver removes the VFs, clears their VFTs and releases MSI and bus mastering', () => {
    const h = new Host({ devices: ['zip-v3'] });
    h.sysfsWrite(`${dev(ZIP_PF)}/sriov_numvfs`, '3');
    const vf = h.device(vfBdf(ZIP_PF, 1))!;
    expect(h.sysfsWrite(`${drvDir('hisi_zip')}/unbind`, ZIP_PF)).toBe(0);
    expect(h.sysfsList('/sys/bus/pci/devices')).toEqual([ZIP_PF]);
    expect(vf.present).toBe(false);
    expect(getPfQm(vf)).toBeUndefined();
    const pf = h.device(ZIP_PF)!;
    pf.fn.configWrite(PCI_COMMAND, 2, PCI_COMMAND_MEMORY);
    for (let fn = 1; fn <= 3; fn++) expect(rawVftRead(pf.fn, fn, 0)).toBe(0n);
    expect(pf.fn.msi.enabled).toBe(false);
    expect(pf.drvdata).toBeUndefined();
    // Rebinding probes again from scratch.
    expect(h.sysfsWrite(`${drvDir('hisi_zip')}/bind`, ZIP_PF)).toBe(0);
    expect(qmOf(h, ZIP_PF).vfsNum).toBe(0);
  });
});
