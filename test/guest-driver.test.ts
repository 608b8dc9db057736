/**
 * The guest VF driver's protocol (qm-hardware.md section 8 over sections 2-5): what it reads
 * at probe, what it programs at start and qp start, the doorbells it rings, completion by
 * interrupt and by polling, ring wraps, doorbell isolation, qp stop/start and uninit.
 */
import { describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import { createBareVm } from '../src/guest/bare-vm.js';
import { loadProfile } from '../src/hw/firmware.js';
import { aesEcb, code, type Db64, decodeDb, traceIo, u16, u32 } from './guest-helpers.js';

const K16 = new Uint8Array(crypto.randomBytes(16));
const NOIV = new Uint8Array(0);

describe('probe (section 8): version, caps, VFT, MSI, depths', () => {
  it('reads its queues from the VFT the PF programmed: 3 ZIP VFs split 960 queues from VF3 down (section 4)', () => {
    const vm = createBareVm({ profile: 'zip-v3', numVfs: 3, guests: [1, 2, 3] });
    // (1024 - 64) / 3 = 320 each; VF3 gets the lowest base, right after the PF's 64.
    expect(vm.guest(3).driver.info).toMatchObject({ qpBase: 64, qpNum: 320 });
    expect(vm.guest(2).driver.info).toMatchObject({ qpBase: 384, qpNum: 320 });
    expect(vm.guest(1).driver.info).toMatchObject({ qpBase: 704, qpNum: 320 });
    // the PF registers really carried it: the device's own table agrees
    expect(vm.device.qm.vft.qpBase(1)).toBe(704);
    expect(vm.device.qm.vft.qpNum(0)).toBe(64);
  });

  it('7 VFs: the remainder queue goes to VF7 (960 = 7*137 + 1)', () => {
    const vm = createBareVm({ profile: 'zip-v3', numVfs: 7, guests: [7, 6, 1] });
    expect(vm.guest(7).driver.info).toMatchObject({ qpBase: 64, qpNum: 138 });
    expect(vm.guest(6).driver.info).toMatchObject({ qpBase: 202, qpNum: 137 });
    expect(vm.guest(1).driver.info).toMatchObject({ qpBase: 887, qpNum: 137 });
  });

  it('V2: no capability registers -> defaults, 2 vectors, no isolation; SEC keeps 256 PF queues', () => {
    const d = createBareVm({ profile: 'sec-v2' }).driver;
    expect(d.info).toMatchObject({
      engine: 'sec', hwVersion: 'v2', revision: 0x21, caps: 0, qpBase: 256, qpNum: 768, sqeSize: 128,
      sqDepth: 1024, cqDepth: 1024, eqDepth: 2048, aeqDepth: 1024, doorbellIsolation: false,
      vectors: { count: 2, eq: 0, aeq: 1, ifc: -1 },
    });
  });

  it('V3 caps 0x6F01 and IRQ caps; V4 by revision 0x50 and by revision 0x30 + QM_SUB_VERSION_ID 0x50', () => {
    const v3 = createBareVm({ profile: 'hpre-v3' }).driver;
    expect(v3.info).toMatchObject({ hwVersion: 'v3', caps: 0x6f01, sqeSize: 64, vectors: { count: 3, eq: 0, aeq: 1, ifc: 2 } });
    expect(createBareVm({ profile: 'hpre-v4' }).driver.info.hwVersion).toBe('v4');
    const p = loadProfile('zip-v4');
    p.pci.revision = 0x30;
    const d = createBareVm({ profile: p }).driver;
    expect(d.info).toMatchObject({ hwVersion: 'v4', revision: 0x30, subVersion: 0x50 });
  });

  it('cap_ver 0 on a V3 part means the V3 defaults (0x6F01)', () => {
    const p = loadProfile('zip-v3');
    p.caps.funcCaps = 0;
    expect(createBareVm({ profile: p }).driver.info.caps).toBe(0x6f01);
  });

  it('a V3 part without STOP_QP / MB_COMMAND: qp stop drains by polling the contexts, IFC stays masked', () => {
    const p = loadProfile('sec-v3');
    p.caps.funcCaps = 0x01; // cap_ver 1, no feature bits
    const log: Db64[] = [];
    const vm = createBareVm({ profile: p, guests: [], latencies: { processNs: 20_000 } });
    const g = vm.attachGuest(1, { wrapIo: traceIo(log) });
    expect(g.driver.canStopQp).toBe(false);
    expect(vm.device.qm.vf(1)!.debugSnapshot().masks.ifc).toBe(true);
    const data = new Uint8Array(crypto.randomBytes(16));
    const t = g.accel.submitJob({ op: 'encrypt', alg: 'aes-128-ecb', key: K16, iv: NOIV, data });
    log.length = 0;
    g.driver.qp(0)!.stop();
    const cmds = log.filter((d) => d.off === 0x300).map((d) => ({ cmd: d.lo & 0xff, op: (d.lo >>> 14) & 1 }));
    expect(cmds.some((c) => c.cmd === 8)).toBe(false); // no STOP_QP
    expect(cmds.slice(0, 2)).toEqual([{ cmd: 0, op: 1 }, { cmd: 1, op: 1 }]); // SQC / CQC dumps
    const r = g.accel.result(t)!;
    expect(r.ok && Buffer.from(r.output).equals(aesEcb(K16, data))).toBe(true);
  });

  it('enables bus mastering and MSI: 3 vectors need Multiple Message Enable = 4; V2 asks for 2', () => {
    const vm = createBareVm({ profile: 'zip-v3' });
    expect(vm.vf.busMasterEnabled).toBe(true);
    expect(vm.vf.msi.enabled).toBe(true);
    expect(vm.vf.msi.enabledVectors).toBe(4);
    expect(vm.vf.msi.messageAddress).toBe(0xfee00000);
    const v2 = createBareVm({ profile: 'zip-v2' });
    expect(v2.vf.msi.enabledVectors).toBe(2);
  });

  it('ring depths can be chosen below the hardware maximum; invalid ones are EINVAL', () => {
    const d = createBareVm({ profile: 'zip-v3', driver: { sqDepth: 16, eqDepth: 64, aeqDepth: 8 } }).driver;
    expect(d.info).toMatchObject({ sqDepth: 16, cqDepth: 16, eqDepth: 64, aeqDepth: 8 });
    expect(code(() => createBareVm({ profile: 'zip-v3', driver: { sqDepth: 24 } }))).toBe('EINVAL');
    expect(code(() => createBareVm({ profile: 'zip-v3', driver: { sqDepth: 2048 } }))).toBe('EINVAL');
    // V2 drains by comparing SQ and CQ tails, so the depths must match there
    expect(code(() => createBareVm({ profile: 'zip-v2', driver: { sqDepth: 16, cqDepth: 8 } }))).toBe('EINVAL');
  });
});

describe('start and qp start: what the driver programs (sections 3 and 8)', () => {
  it('EQC/AEQC dw6 = depth-1 | phase 1, SQC_BT/CQC_BT set, EQ/AEQ unmasked, QM_VF_STATE 0', () => {
    const vm = createBareVm({ profile: 'zip-v3', driver: { eqDepth: 256, aeqDepth: 64 } });
    const s = vm.device.qm.vf(1)!.debugSnapshot();
    expect(s.eq.dw[6]).toBe(255 | (1 << 16));
    expect(s.aeq.dw[6]).toBe(63 | (1 << 16));
    expect([s.eq.head, s.eq.tail, s.aeq.head, s.aeq.tail]).toEqual([0, 0, 0, 0]);
    expect(s.eq.base).toBeGreaterThanOrEqual(vm.ram.base);
    // EQE[256] then AEQE[64], contiguous 32-byte aligned segments
    expect(s.aeq.base).toBe(s.eq.base + 256 * 4);
    expect(s.sqcBt).toBe(s.aeq.base + 64 * 4);
    expect(s.cqcBt).toBe(s.sqcBt! + 960 * 32);
    expect(s.masks).toMatchObject({ eq: false, aeq: false, ifc: false });
    expect(s.vfState).toBe(0);
  });

  it('SQC: dw3 = (depth-1) | log2(sqe)<<12, w13 alg_type, cq_num = qp; CQC: dw3 16-byte CQE, dw6 phase|c_flag', () => {
    for (const [profile, log2] of [['zip-v3', 7], ['hpre-v2', 6]] as const) {
      const vm = createBareVm({ profile, driver: { sqDepth: 64 } });
      const d = vm.driver;
      d.createQp(0);
      const qp = d.createQp(1);
      const sqc = d.dumpContext('sqc', qp.qn);
      expect(u16(sqc, 0)).toBe(0); // head
      expect(u16(sqc, 2)).toBe(0); // tail
      expect(u32(sqc, 4) + u32(sqc, 8) * 2 ** 32).toBe(qp.sqBase);
      expect(u32(sqc, 12)).toBe(63 | (log2 << 12));
      expect(u16(sqc, 24)).toBe(1); // cq_num
      expect((u16(sqc, 26) >>> 8) & 0xf).toBe(1); // alg_type
      const cqc = d.dumpContext('cqc', qp.qn);
      expect(u32(cqc, 4) + u32(cqc, 8) * 2 ** 32).toBe(qp.cqBase);
      expect(qp.cqBase).toBe(qp.sqBase + 64 * (1 << log2));
      expect(u32(cqc, 12)).toBe(63 | (4 << 12));
      expect(u32(cqc, 24)).toBe(3); // phase 1, c_flag 1
    }
    const poll = createBareVm({ profile: 'zip-v3', driver: { completion: 'poll' } }).driver;
    const qp = poll.createQp(0);
    expect(u32(poll.dumpContext('cqc', qp.qn), 24)).toBe(1); // completion interrupts off
  });

  it('one job rings: SQ(tail 1, prio 0), CQ(head 1, prio 0), CQ(head 1, prio 1), EQ(head 1)', () => {
    const log: Db64[] = [];
    const vm = createBareVm({ profile: 'sec-v3', guests: [] });
    const g = vm.attachGuest(1, { wrapIo: traceIo(log) });
    g.accel.encrypt('aes-128-ecb', K16, NOIV, new Uint8Array(16)); // creates qp 0 first
    log.length = 0;
    const data = new Uint8Array(crypto.randomBytes(32));
    expect(Buffer.from(g.accel.encrypt('aes-128-ecb', K16, NOIV, data)).equals(aesEcb(K16, data))).toBe(true);
    const dbs = log.filter((d) => d.off === 0x1000 || d.off === 0x2000).map((d) => ({ off: d.off, ...decodeDb(d) }));
    expect(dbs).toEqual([
      { off: 0x1000, qn: 0, cmd: 0, index: 2, prio: 0 },
      { off: 0x1000, qn: 0, cmd: 1, index: 2, prio: 0 },
      { off: 0x1000, qn: 0, cmd: 1, index: 2, prio: 1 },
      { off: 0x2000, qn: 0, cmd: 2, index: 2, prio: 0 },
    ]);
    expect(g.driver.stats.irqCqes).toBe(2);
    expect(g.driver.stats.polledCqes).toBe(0);
  });

  it('mailbox commands go out as two 64-bit stores at 0x300 and 0x308 (latched on the last dword)', () => {
    const log: Db64[] = [];
    const vm = createBareVm({ profile: 'zip-v3', guests: [] });
    vm.attachGuest(1, { wrapIo: traceIo(log) });
    const mb = log.filter((d) => d.off === 0x300 || d.off === 0x308);
    // probe: SQC_VFT_V2 (op 1); start: EQC, AEQC, SQC_BT, CQC_BT (op 0)
    const cmds = mb.filter((d) => d.off === 0x300).map((d) => ({ cmd: d.lo & 0xff, busy: (d.lo >>> 13) & 1, op: (d.lo >>> 14) & 1 }));
    expect(cmds).toEqual([
      { cmd: 6, busy: 1, op: 1 }, { cmd: 2, busy: 1, op: 0 }, { cmd: 3, busy: 1, op: 0 },
      { cmd: 4, busy: 1, op: 0 }, { cmd: 5, busy: 1, op: 0 },
    ]);
    for (let i = 0; i < mb.length; i += 2) {
      expect(mb[i]!.off).toBe(0x300);
      expect(mb[i + 1]!.off).toBe(0x308);
      expect(mb[i + 1]!.hi).toBe(0); // reserved dword
    }
  });

  it('doorbell isolation (QM_QUE_ISO_CFG): SQ/CQ doorbells go to the qp\'s BAR4 page at qn*0x10000+0x1000', () => {
    const log: Db64[] = [];
    const vm = createBareVm({ profile: 'zip-v3', guests: [], doorbellIsolation: true });
    const g = vm.attachGuest(1, { wrapIo: traceIo(log) });
    expect(g.driver.info.doorbellIsolation).toBe(true);
    const data = new Uint8Array(Buffer.from('isolated doorbells '.repeat(30)));
    const c = g.accel.compress(data, 'deflate'); // qp 0
    expect(Buffer.from(g.accel.decompress(c, 'deflate')).equals(Buffer.from(data))).toBe(true); // qp 1
    const sqcq = log.filter((d) => d.bar === 4);
    expect(sqcq.length).toBeGreaterThanOrEqual(6);
    for (const d of sqcq) expect(d.off).toBe(decodeDb(d).qn * 0x10000 + 0x1000);
    expect(sqcq.some((d) => d.off === 0x11000)).toBe(true);
    expect(log.some((d) => d.bar === 2 && d.off === 0x1000)).toBe(false);
    expect(vm.device.qm.vf(1)!.debugSnapshot().doorbells.wrongPath).toBe(0);
  });
});

describe('completion and ring wraps', () => {
  it('submission queue is full at depth-1 entries: trySubmitJob EBUSY, then all complete', () => {
    const vm = createBareVm({ profile: 'sec-v3', latencies: { processNs: 1000 }, driver: { sqDepth: 8 } });
    const a = vm.accel;
    const inputs = Array.from({ length: 7 }, () => new Uint8Array(crypto.randomBytes(16)));
    const tickets = inputs.map((data) => a.trySubmitJob({ op: 'encrypt', alg: 'aes-128-ecb', key: K16, iv: NOIV, data }));
    expect(code(() => a.trySubmitJob({ op: 'encrypt', alg: 'aes-128-ecb', key: K16, iv: NOIV, data: inputs[0]! }))).toBe('EBUSY');
    a.drain();
    tickets.forEach((t, i) => {
      const r = a.result(t)!;
      expect(r.ok && Buffer.from(r.output).equals(aesEcb(K16, inputs[i]!))).toBe(true);
    });
  });

  for (const completion of ['interrupt', 'poll'] as const) {
    it(`${completion}: thousands of jobs through depth-16 rings (phase toggles on SQ, CQ, EQ)`, () => {
      const depth = { sqDepth: 16, cqDepth: 16, eqDepth: 16, aeqDepth: 16 };
      const vm = createBareVm({ profile: 'sec-v3', driver: { completion, ...depth } });
      const a = vm.accel;
      const n = completion === 'interrupt' ? 5000 : 2000;
      const inputs = new Map<number, Uint8Array>();
      let good = 0;
      a.onComplete((t, r) => {
        if (r.ok && Buffer.from(r.output).equals(aesEcb(K16, inputs.get(t)!))) good++;
      });
      for (let i = 0; i < n; i++) {
        const data = new Uint8Array(crypto.randomBytes(16));
        inputs.set(a.submitJob({ op: 'encrypt', alg: 'aes-128-ecb', key: K16, iv: NOIV, data }), data);
      }
      a.drain();
      expect(good).toBe(n);
      const qp = vm.driver.qp(0)!;
      expect(qp.stats).toEqual({ submitted: n, completed: n, spurious: 0, failed: 0 });
      const snap = vm.device.qm.vf(1)!.debugSnapshot();
      if (completion === 'interrupt') {
        // EQEs were consumed past the 16-entry ring many times
        expect(vm.driver.stats.eqes).toBeGreaterThan(64);
        expect(vm.driver.stats.irqCqes).toBe(n);
      } else {
        expect(snap.eq.tail).toBe(0); // c_flag 0: no EQE ever written
        expect(snap.irq.perVector[0]).toBe(0);
        expect(vm.driver.stats.polledCqes).toBe(n);
      }
      expect(snap.qps[0]!.cqHead).toBe(n % 16);
      expect(snap.qps[0]!.cqPhase).toBe(1 ^ (Math.floor(n / 16) & 1));
      expect(vm.driver.stats.aeqes).toBe(0);
    });
  }

  it('a CQ shallower than the SQ overflows: AEQE CQ_OVERFLOW, the driver reaps and everything completes', () => {
    const vm = createBareVm({ profile: 'sec-v3', driver: { sqDepth: 16, cqDepth: 4 } });
    const a = vm.accel;
    const inputs = Array.from({ length: 15 }, () => new Uint8Array(crypto.randomBytes(16)));
    const tickets = inputs.map((data) => a.submitJob({ op: 'encrypt', alg: 'aes-128-ecb', key: K16, iv: NOIV, data }));
    a.drain();
    tickets.forEach((t, i) => {
      const r = a.result(t)!;
      expect(r.ok && Buffer.from(r.output).equals(aesEcb(K16, inputs[i]!))).toBe(true);
    });
    expect(vm.driver.stats.cqOverflows).toBeGreaterThanOrEqual(1);
  });
});

describe('qp stop/start and uninit', () => {
  for (const hw of ['v3', 'v2'] as const) {
    it(`${hw}: stopping a qp with jobs in flight (${hw === 'v3' ? 'STOP_QP' : 'tail-polling drain'}) completes them; restart works`, () => {
      const vm = createBareVm({ profile: `sec-${hw}`, latencies: { processNs: 20_000 } });
      const a = vm.accel;
      const inputs = Array.from({ length: 6 }, () => new Uint8Array(crypto.randomBytes(32)));
      const tickets = inputs.map((data) => a.submitJob({ op: 'encrypt', alg: 'aes-128-ecb', key: K16, iv: NOIV, data }));
      const qp = vm.driver.qp(0)!;
      expect(qp.inFlight).toBe(6);
      qp.stop();
      expect(qp.state).toBe('stopped');
      tickets.forEach((t, i) => {
        const r = a.result(t)!;
        expect(r.ok && Buffer.from(r.output).equals(aesEcb(K16, inputs[i]!))).toBe(true);
      });
      expect(code(() => a.encrypt('aes-128-ecb', K16, NOIV, inputs[0]!))).toBe('EIO');
      qp.start();
      expect(Buffer.from(a.encrypt('aes-128-ecb', K16, NOIV, inputs[1]!)).equals(aesEcb(K16, inputs[1]!))).toBe(true);
    });
  }

  it('uninit: masks IFC, writes the context cache back, QM_VF_STATE 1, frees all guest memory, PCI off', () => {
    const vm = createBareVm({ profile: 'zip-v3' });
    vm.accel.compress(new Uint8Array(100), 'zlib');
    expect(vm.ram.blocks).toBeGreaterThan(0);
    vm.driver.uninit();
    const s = vm.device.qm.vf(1)!.debugSnapshot();
    expect(s.vfState).toBe(1);
    expect(s.writebackDone).toBe(true);
    expect(s.masks).toMatchObject({ eq: true, aeq: true, ifc: true });
    expect(vm.ram.blocks).toBe(0);
    expect(vm.vf.msi.enabled).toBe(false);
    expect(vm.vf.busMasterEnabled).toBe(false);
    expect(vm.driver.state).toBe('removed');
    expect(code(() => vm.driver.start())).toBe('ENODEV');
    expect(code(() => vm.accel.compress(new Uint8Array(1), 'zlib'))).toBe('EIO');
  });
});
