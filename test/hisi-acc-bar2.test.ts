/**
 * The migration-control half of the VF BAR2 is hidden on every path of the device fd
 * (hisi-acc-vfio-pci.md section 2): region info, read/write (EINVAL past 0x8000, counts
 * clipped), mmap (EINVAL past 0x8000; refused outright with 64 KiB pages), ioeventfd; and the
 * model's audit log shows the guest never reached the upper half. PF-control mode (V4)
 * exposes the whole BAR2 and moves the EQC/AEQC access to the PF window.
 */
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { readToEnd } from '../src/drivers/hisi-acc/testbed.js';
import { decodeAccVfData } from '../src/drivers/hisi-acc/acc-vf-data.js';
import type { VfioDeviceFile } from '../src/vfio/pci-core/device-file.js';
import {
  REGION_OFFSET, S, VFIO_DEVICE_IOEVENTFD, errno, pread, pwrite, regionInfo, rig, setState,
} from './hisi-acc-helpers.js';

const BAR2 = REGION_OFFSET(2);

function ioeventfd(file: VfioDeviceFile, fd: number, offset: number, size: 1 | 2 | 4 | 8): number {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 32, true);
  dv.setUint32(4, size, true);
  dv.setBigUint64(8, BigInt(BAR2 + offset), true);
  dv.setBigUint64(16, 0n, true);
  dv.setInt32(24, fd, true);
  return file.ioctl(VFIO_DEVICE_IOEVENTFD, b);
}

describe('BAR2 upper half hidden (spec 2)', () => {
  it('GET_REGION_INFO(BAR2): size 0x8000, READ|WRITE|MMAP, offset INDEX_TO_OFFSET(2)', () => {
    const { vm } = rig({ vm: { start: false } });
    const r = regionInfo(vm!.device, 2);
    expect(r.ret).toBe(0);
    expect(r.size).toBe(0x8000n);
    expect(r.flags).toBe(1 | 2 | 4);
    expect(r.offset).toBe(2n << 40n);
    // Other BARs keep the core's answer.
    expect(regionInfo(vm!.device, 4).size).toBe(BigInt(vm!.host.vf(1).fn.barSizes[4]!));
  });

  it('read/write: EINVAL at or past 0x8000, counts that cross it are clipped', () => {
    const { host, vm } = rig({ vm: { start: false } });
    const dev = vm!.device;
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    for (const off of [0x8000, 0x8004, 0x8020, 0xfffc]) {
      expect(pread(dev, BAR2 + off, 4)[0]).toBe(errno('EINVAL'));
      expect(pwrite(dev, BAR2 + off, new Uint8Array(4))).toBe(errno('EINVAL'));
    }
    expect(pread(dev, BAR2 + 0x7ffc, 8)[0]).toBe(4);
    expect(pread(dev, BAR2 + 0x7ff0, 64)[0]).toBe(16);
    expect(pwrite(dev, BAR2 + 0x7ffc, new Uint8Array(8))).toBe(4);
    // QM_VF_STATE (0x60) in the low half reads normally: 1 = not ready, no guest driver.
    const [n, b] = pread(dev, BAR2 + 0x60, 4);
    expect(n).toBe(4);
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(1);
    expect(audit.count('guest', 'high')).toBe(0);
    expect(audit.count('guest', 'low')).toBeGreaterThan(0);
  });

  it('mmap: EINVAL when start+len passes 0x8000, fine inside', () => {
    const { host, vm } = rig({ vm: { start: false } });
    const dev = vm!.device;
    const ok = dev.mmap(BAR2, 0x8000);
    expect(typeof ok).not.toBe('number');
    const inner = dev.mmap(BAR2 + 0x7000, 0x1000);
    expect(typeof inner).not.toBe('number');
    expect(dev.mmap(BAR2 + 0x7000, 0x2000)).toBe(errno('EINVAL'));
    expect(dev.mmap(BAR2 + 0x8000, 0x1000)).toBe(errno('EINVAL'));
    expect(dev.mmap(BAR2, 0x8001)).toBe(errno('EINVAL'));
    expect(dev.mmap(BAR2, 0x10000)).toBe(errno('EINVAL'));
    // The allowed mapping cannot reach beyond its own length either.
    const m = ok as Exclude<typeof ok, number>;
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    expect(m.read32(0x8000)).toBe(0xffffffff);
    expect(m.faults).toBe(1);
    expect(audit.count('guest', 'high')).toBe(0);
  });

  it('64 KiB host pages: BAR2 mmap refused outright, read/write still serve the guest', () => {
    const { host, vm } = rig({ driver: { hostPageSize: 65536 } });
    const dev = vm!.device;
    expect(dev.mmap(BAR2, 0x1000)).toBe(errno('EINVAL'));
    expect(dev.mmap(BAR2, 0x8000)).toBe(errno('EINVAL'));
    expect(dev.mmap(BAR2, 0x10000)).toBe(errno('EINVAL'));
    expect(regionInfo(dev, 2).size).toBe(0x8000n);
    // Other BARs map in whole 64 KiB pages only.
    expect(dev.mmap(REGION_OFFSET(4) + 0x1000, 0x1000)).toBe(errno('EINVAL'));
    const m4 = dev.mmap(REGION_OFFSET(4), 0x1000);
    expect(typeof m4 === 'number' ? m4 : m4.length).toBe(0x10000);
    // The guest driver fell back to read/write of the fd and works.
    expect(vm!.io.mapped(2)).toBe(false);
    const data = new Uint8Array(Buffer.from('abcabcabc'.repeat(500)));
    const out = vm!.accel!.compress(data, 'deflate');
    expect(Buffer.from(inflateRawSync(out)).equals(Buffer.from(data))).toBe(true);
    expect(host.acc.qm.vf(1)!.audit.count('guest', 'high')).toBe(0);
    expect(pread(dev, BAR2 + 0x8000, 4)[0]).toBe(errno('EINVAL'));
  });

  it('VFIO_DEVICE_IOEVENTFD on the upper half: EINVAL; below it the core takes it', () => {
    const { host, vm } = rig({ vm: { start: false } });
    const dev = vm!.device;
    const { fd } = host.fds.eventfd();
    expect(ioeventfd(dev, fd, 0x8000, 4)).toBe(errno('EINVAL'));
    expect(ioeventfd(dev, fd, 0x8020, 8)).toBe(errno('EINVAL'));
    expect(ioeventfd(dev, fd, 0xfff8, 8)).toBe(errno('EINVAL'));
    expect(ioeventfd(dev, fd, 0x1000, 8)).toBe(0);
    expect(ioeventfd(dev, fd, 0x7ff8, 8)).toBe(0);
  });

  it('the hidden half holds the live EQC: the driver reads it during a save, the guest never', () => {
    const { host, vm } = rig();
    const audit = host.acc.qm.vf(1)!.audit;
    const data = new Uint8Array(Buffer.from('0123456789'.repeat(300)));
    const out = vm!.accel!.compress(data, 'deflate');
    expect(Buffer.from(out).equals(deflateRawSync(data)) || inflateRawSync(out).equals(Buffer.from(data))).toBe(true);
    expect(audit.count('driver', 'high')).toBe(0);
    const r = setState(vm!.device, S.STOP_COPY);
    expect(r.ret).toBe(0);
    const stream = readToEnd(host.fds, r.fd).bytes;
    const d = decodeAccVfData(stream).data;
    const snap = host.acc.qm.vf(1)!.debugSnapshot();
    expect(d.qm_eqc_dw).toEqual(snap.eq.dw);
    expect(d.qm_aeqc_dw).toEqual(snap.aeq.dw);
    expect(audit.count('driver', 'high')).toBe(14);
    expect(audit.count('guest', 'high')).toBe(0);
  });
});

describe('PF-control mode (V4, spec 2)', () => {
  it('exposes the whole BAR2 and saves EQC/AEQC through the PF window at 0x180000 + vf_id*0x2000', () => {
    const { host, vm } = rig({ profile: 'zip-v4', driver: { pfControl: true } });
    const dev = vm!.device;
    expect(regionInfo(dev, 2).size).toBe(0x10000n);
    expect(host.pf.fn.mmioRead(2, 0x100198, 4, 'test') & 1).toBe(1);
    // The VF's own upper half now reads all-ones (moved into the PF).
    const [n, b] = pread(dev, BAR2 + 0x8000, 4);
    expect(n).toBe(4);
    expect(new DataView(b.buffer).getUint32(0, true)).toBe(0xffffffff);
    expect(typeof dev.mmap(BAR2, 0x10000)).not.toBe('number');
    const data = new Uint8Array(Buffer.from('xyz'.repeat(999)));
    vm!.accel!.compress(data, 'deflate');
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    const r = setState(dev, S.STOP_COPY);
    expect(r.ret).toBe(0);
    const d = decodeAccVfData(readToEnd(host.fds, r.fd).bytes).data;
    const snap = host.acc.qm.vf(1)!.debugSnapshot();
    expect(d.qm_eqc_dw).toEqual(snap.eq.dw);
    expect(d.eqe_dma).toBe(BigInt(snap.eq.base));
    // Independent read of the PF window (EQC at +0x1C00 of VF 1's 8 KiB slot).
    expect(host.pf.fn.mmioRead(2, 0x180000 + 1 * 0x2000 + 0x1c00 + 4, 4, 'test')).toBe(snap.eq.dw[1]);
    expect(audit.count('driver', 'high')).toBe(0);
    expect(audit.count('driver', 'low')).toBeGreaterThan(0);
  });

  it('V4 without the option keeps the VF-side window and hides it', () => {
    const { host, vm } = rig({ profile: 'zip-v4' });
    expect(regionInfo(vm!.device, 2).size).toBe(0x8000n);
    expect(host.pf.fn.mmioRead(2, 0x100198, 4, 'test') & 1).toBe(0);
    expect(pread(vm!.device, BAR2 + 0x8000, 4)[0]).toBe(errno('EINVAL'));
  });
});
