/**
 * The debug view (hisi-acc-vfio-pci.md section 9): live registers only when the guest cannot
 * run, last known values otherwise (and it says so), the last migration data decoded, and the
 * mailbox state.
 */
import { describe, expect, it } from 'vitest';
import { debugView } from '../src/drivers/hisi-acc/debug-view.js';
import { readToEnd } from '../src/drivers/hisi-acc/testbed.js';
import { S, rig, setState } from './hisi-acc-helpers.js';

describe('debugView (spec 9)', () => {
  it('says when a device has no hisi-acc migration state', () => {
    const { host } = rig({ vm: false, bindVfs: [] });
    const v = debugView(host.vf(1));
    expect(v.registers.source).toBe('none');
    expect(v.migf).toBeNull();
    expect(v.text).toContain('not bound');
  });

  it('never reads the VF while the guest may run; live values in STOP_COPY; last known afterwards', () => {
    const { host, vm } = rig();
    vm!.accel!.compress(new Uint8Array(4000).fill(9), 'deflate');
    const audit = host.acc.qm.vf(1)!.audit;
    let v = debugView(host.vf(1));
    expect(v.opened).toBe(true);
    expect(v.migStateName).toBe('RUNNING');
    expect(v.registers.source).toBe('none');
    expect(v.registers.note).toContain('guest may be running');
    expect(v.mailboxReady).toBeNull();
    expect(audit.count('driver', 'low') + audit.count('driver', 'high')).toBe(0);

    const r = setState(vm!.device, S.STOP_COPY);
    const stream = readToEnd(host.fds, r.fd).bytes;
    v = debugView(host.vf(1));
    expect(v.registers.source).toBe('live');
    expect(v.mailboxReady).toBe(true);
    expect(Buffer.from(v.registers.bytes!).equals(Buffer.from(stream.subarray(0, 144)))).toBe(true);
    expect(v.registers.fields!.qm_eqc_dw).toEqual(host.acc.qm.vf(1)!.debugSnapshot().eq.dw.map((x) => `0x${x.toString(16).padStart(8, '0')}`));
    expect(v.migf!.side).toBe('save');
    expect(v.migf!.length).toBe(176);
    expect(Buffer.from(v.migf!.bytes).equals(Buffer.from(stream))).toBe(true);
    expect(v.migf!.fields.dev_id).toBe('0x0000a251');
    expect(v.text).toContain('Dev Data:00000000: ');
    expect(v.text).toContain('migf_data (save, 176 bytes)');
    expect(v.text).toContain('mailbox: ready');

    expect(setState(vm!.device, S.RUNNING).ret).toBe(0);
    const before = audit.count('driver', 'low') + audit.count('driver', 'high');
    v = debugView(host.driver.coreOf(host.vf(1))!);
    expect(v.registers.source).toBe('last-known');
    expect(v.registers.note).toMatch(/^last known values/);
    expect(Buffer.from(v.registers.bytes!).equals(Buffer.from(stream.subarray(0, 144)))).toBe(true);
    expect(v.mailboxReady).toBeNull();
    expect(audit.count('driver', 'low') + audit.count('driver', 'high')).toBe(before);
  });

  it('reports a busy mailbox', () => {
    const { host, vm } = rig();
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    host.acc.qm.vf(1)!.faults.setMailboxHang(true);
    const v = debugView(host.vf(1));
    expect(v.mailboxReady).toBe(false);
    expect(v.registers.note).toContain('read failed');
    expect(v.text).toContain('mailbox: busy');
  });
});
