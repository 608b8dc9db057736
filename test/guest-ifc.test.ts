/**
 * PF -> VF reset notifications (qm-hardware.md 5): the test plays the PF driver through the
 * PF's own registers. V3 carries messages in the mailbox (SRC/DST), V4 in the data registers
 * (PF 0x104700 -> VF 0x380, VF 0x320 -> PF 0x104800 + 4n).
 */
import { describe, expect, it } from 'vitest';
import * as crypto from 'node:crypto';
import { createBareVm, type BareVm } from '../src/guest/bare-vm.js';
import { aesEcb } from './guest-helpers.js';

const IFC_READY_STATUS = 0x100128;
const IFC_INT_SET_P = 0x100130;
const IFC_INT_CFG = 0x100134;
const IFC_INT_SOURCE_P = 0x100138;
const PF2VF_PF_W = 0x104700;
const VF2PF_PF_R = 0x104800;
const PF_FLR_PREPARE = 1;
const PF_RESET_DONE = 3;
const VF_PREPARE_DONE = 4;
const VF_START_DONE = 6;

const K16 = new Uint8Array(crypto.randomBytes(16));

class FakePf {
  readonly received: number[] = [];
  constructor(private readonly vm: BareVm, private readonly v4: boolean) {}

  private rd(off: number): number { return this.vm.pf.mmioRead(2, off, 4, 'pf'); }
  private wr(off: number, v: number): void { this.vm.pf.mmioWrite(2, off, 4, v, 'pf'); }

  private mailbox(cmd: number, queue: number, lo: number): number {
    const pf = this.vm.pf;
    pf.mmioWrite64(2, 0x300, (cmd | (1 << 13) | (queue << 16)) >>> 0, lo, 'pf');
    pf.mmioWrite64(2, 0x308, 0, 0, 'pf');
    expect((this.rd(0x300) >>> 9) & 0xf).toBe(0);
    return this.rd(0x304);
  }

  /** Message to VF `vf`, then the PF->VF interrupt. */
  send(vf: number, cmd: number): void {
    if (this.v4) {
      this.wr(PF2VF_PF_W, cmd);
      this.wr(PF2VF_PF_W + 4, 0);
    } else {
      this.mailbox(0xc, vf, cmd);
    }
    this.wr(IFC_INT_CFG, vf);
    this.wr(IFC_INT_SET_P, 1);
  }

  /** Polls QM_IFC_INT_SOURCE_P every 5 us (bounded) and answers VF interrupts like a PF driver. */
  serve(polls: number): void {
    const sched = this.vm.sched;
    const tick = (left: number): void => {
      const src = this.rd(IFC_INT_SOURCE_P);
      for (let vf = 1; vf < 32; vf++) {
        if (((src >>> vf) & 1) === 0) continue;
        this.received.push(this.v4 ? this.rd(VF2PF_PF_R + 4 * vf) : this.mailbox(0xd, vf, 0));
        this.wr(IFC_INT_SOURCE_P, 1 << vf);
      }
      if (left > 0) sched.schedule(5_000, () => tick(left - 1));
    };
    sched.schedule(5_000, () => tick(polls));
  }
}

describe.each(['v3', 'v4'] as const)('IFC %s: PF reset prepare / done', (hw) => {
  it('prepare stops the VF (jobs in flight finish), done restarts it; each is acknowledged', () => {
    const vm = createBareVm({ profile: `sec-${hw}`, latencies: { processNs: 10_000 } });
    const pf = new FakePf(vm, hw === 'v4');
    const a = vm.accel;
    const inputs = Array.from({ length: 4 }, () => new Uint8Array(crypto.randomBytes(16)));
    const tickets = inputs.map((data) => a.submitJob({ op: 'encrypt', alg: 'aes-128-ecb', key: K16, iv: new Uint8Array(0), data }));

    pf.serve(400);
    pf.send(1, PF_FLR_PREPARE);
    vm.sched.runUntilIdle();
    expect(pf.received).toEqual([VF_PREPARE_DONE]);
    expect(vm.driver.state).toBe('stopped');
    expect(vm.device.qm.vf(1)!.debugSnapshot().masks).toMatchObject({ eq: true, aeq: true });
    // the VF acknowledged the PF's interrupt (READY_STATUS bit 1 clear)
    expect((vm.pf.mmioRead(2, IFC_READY_STATUS, 4, 'pf') >>> 1) & 1).toBe(0);
    tickets.forEach((t, i) => {
      const r = a.result(t)!;
      expect(r.ok && Buffer.from(r.output).equals(aesEcb(K16, inputs[i]!))).toBe(true);
    });

    pf.serve(400);
    pf.send(1, PF_RESET_DONE);
    vm.sched.runUntilIdle();
    expect(pf.received).toEqual([VF_PREPARE_DONE, VF_START_DONE]);
    expect(vm.driver.state).toBe('started');
    expect(vm.driver.qp(0)!.running).toBe(true);
    const data = new Uint8Array(crypto.randomBytes(32));
    expect(Buffer.from(a.encrypt('aes-128-ecb', K16, new Uint8Array(0), data)).equals(aesEcb(K16, data))).toBe(true);
    expect(vm.driver.stats.ifcMessages).toBe(2);
    expect(vm.driver.stats.ifcAckTimeouts).toBe(0);
  });

  it('a PF that never acknowledges the reply costs one bounded wait, not a hang', () => {
    const vm = createBareVm({ profile: `zip-${hw}` });
    const pf = new FakePf(vm, hw === 'v4');
    pf.send(1, PF_FLR_PREPARE);
    const t0 = vm.sched.now;
    vm.sched.runUntilIdle();
    expect(vm.driver.state).toBe('stopped');
    expect(vm.driver.stats.ifcAckTimeouts).toBe(1);
    expect(vm.sched.now - t0).toBeLessThanOrEqual(2_000_000);
  });
});
