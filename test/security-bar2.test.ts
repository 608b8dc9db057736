/**
 * Security sweep (issue 6 item 4): the user of the device fd (the VMM acting for its guest)
 * cannot reach the migration-control half of the VF BAR2 (offsets >= 0x8000) on any path
 * (hisi-acc-vfio-pci.md section 2). Each category tries every variant listed in
 * docs/security.md, checks the Linux errno of each attempt, and then checks the model's audit
 * log (0 guest accesses to the upper half) and the live EQC/AEQC (unchanged). Counts of
 * attempts are pinned so docs/security.md stays true.
 */
import { describe, expect, it } from 'vitest';
import type { PciPf } from '../src/hw/pci/pf.js';
import { KernelError } from '../src/uapi/errno.js';
import type { VfioDeviceFile } from '../src/vfio/pci-core/device-file.js';
import type { VfioMapping } from '../src/vfio/pci-core/ops.js';
import { REGION_OFFSET, VFIO_DEVICE_IOEVENTFD, errno, pread, pwrite, regionInfo, rig } from './hisi-acc-helpers.js';
import { PF_MIG_WINDOW, Tally, expectUntouched, migState } from './security-helpers.js';

const BAR2 = REGION_OFFSET(2);
const CFG = REGION_OFFSET(7);
const END = 0x8000;
const EINVAL = errno('EINVAL');
const EFAULT = errno('EFAULT');
const PAGE = 4096;

/** A rig whose guest driver ran a job, so EQC/AEQC hold live, non-reset values. */
function liveRig(opts: Parameters<typeof rig>[0] = {}) {
  const r = rig(opts);
  const data = new Uint8Array(3000).map((_, i) => (i * 7) & 0x3f);
  r.vm!.accel!.compress(data, 'deflate');
  const s = migState(r.host);
  // Live state: the EQ base is programmed (reset value is 0) and dw1 carries it.
  expect(s.eq.base).toBeGreaterThan(0);
  expect(s.eq.dw[1]).toBe(s.eq.base % 2 ** 32);
  return r;
}

function fill(n: number, seed: number): Uint8Array {
  return new Uint8Array(n).map((_, i) => (seed + i * 37) & 0xff);
}

/** VFIO_DEVICE_IOEVENTFD {argsz, flags, offset, data, fd} laid out by hand (linux/vfio.h). */
function ioeventfd(dev: VfioDeviceFile, offset: bigint, flags: number, fd: number, argsz = 32, len = 32): number {
  const b = new Uint8Array(len);
  const dv = new DataView(b.buffer);
  if (len >= 4) dv.setUint32(0, argsz, true);
  if (len >= 8) dv.setUint32(4, flags, true);
  if (len >= 16) dv.setBigUint64(8, offset, true);
  if (len >= 24) dv.setBigUint64(16, 0n, true);
  if (len >= 28) dv.setInt32(24, fd, true);
  return dev.ioctl(VFIO_DEVICE_IOEVENTFD, b);
}

function cfgRead(dev: VfioDeviceFile, off: number, size: number): number {
  const [n, b] = pread(dev, CFG + off, size);
  expect(n).toBe(size);
  let v = 0;
  for (let i = size - 1; i >= 0; i--) v = v * 256 + b[i]!;
  return v;
}

function cfgWrite(dev: VfioDeviceFile, off: number, size: number, v: number): number {
  const b = new Uint8Array(size);
  for (let i = 0; i < size; i++) b[i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
  return pwrite(dev, CFG + off, b);
}

/** Capability `id` found by walking the config chain from 0x34 (hand-walked, not the model's map). */
function findCap(dev: VfioDeviceFile, id: number): number {
  let p = cfgRead(dev, 0x34, 1) & 0xfc;
  for (let n = 0; p !== 0 && n < 48; n++) {
    if (cfgRead(dev, p, 1) === id) return p;
    p = cfgRead(dev, p + 1, 1) & 0xfc;
  }
  return 0;
}

/** The three facts every category re-checks after its tricks: the half is still hidden. */
function stillHidden(dev: VfioDeviceFile, t: Tally): void {
  t.check(pread(dev, BAR2 + END, 4)[0], EINVAL, 'read 0x8000');
  t.check(pwrite(dev, BAR2 + 0x8020, fill(8, 1)), EINVAL, 'write AEQC');
  t.check(pread(dev, BAR2 + 0x7ffc, 16)[0], 4, 'clipped read');
  const m = dev.mmap(BAR2, 0x10000);
  t.check(typeof m === 'number' ? m : 0, EINVAL, 'mmap 64K');
  const ri = regionInfo(dev, 2);
  t.check(ri.ret === 0 && ri.size === 0x8000n ? 0 : -1, 0, 'region info');
}

describe('security: guest cannot reach the BAR2 migration half (spec 2)', () => {
  it('region info and read/write at every region, boundary offset, size and aliasing position', () => {
    const { host, vm } = liveRig();
    const dev = vm!.device;
    const before = migState(host);
    host.acc.qm.vf(1)!.audit.clear();
    const info = new Tally();
    // GET_REGION_INFO, index 0..num_regions+3 and beyond: BAR2 is 0x8000; VGA and past the end EINVAL.
    const want: Record<number, [number, bigint]> = {
      0: [0, 0n], 1: [0, 0n], 2: [0, 0x8000n], 3: [0, 0n], 4: [0, 64n << 20n], 5: [0, 0n], 6: [0, 0n], 7: [0, 4096n],
    };
    for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 255, 0x7fffffff, 0xffffffff]) {
      const r = regionInfo(dev, i);
      const [ret, size] = want[i] ?? [EINVAL, 0n];
      info.check(r.ret, ret, `region info ${i}`);
      if (ret === 0) expect(r.size, `size of region ${i}`).toBe(size);
    }
    expect(info.attempts).toBe(16);

    const rw = new Tally();
    const offs: number[] = [];
    for (let o = 0x7ff0; o <= 0x8010; o++) offs.push(o);
    offs.push(0x8020, 0xfff0, 0xfffc, 0xffff, 0x10000, 0x10001, 0x18000, 0x20000, 2 ** 32, 2 ** 32 + 0x8000, 2 ** 39, 2 ** 40 - 0x8000, 2 ** 40 - 1);
    const sizes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 64, 4096, 0x10000];
    for (const off of offs) {
      for (const n of sizes) {
        const expected = off >= END ? EINVAL : Math.min(n, END - off);
        rw.check(pread(dev, BAR2 + off, n)[0], expected, `read ${off.toString(16)}+${n}`);
        rw.check(pwrite(dev, BAR2 + off, fill(n, off)), expected, `write ${off.toString(16)}+${n}`);
      }
    }
    // Every region index at the offsets that would be the hidden registers.
    const perRegion = (i: number, off: number): number => {
      if (i === 2) return off < END ? 4 : EINVAL;
      if (i === 4) return 4;
      if (i === 7) return off < 4096 ? 4 : EFAULT;
      return EINVAL; // absent BARs 0/1/3/5, no ROM, no VGA, past num_regions
    };
    for (let i = 0; i <= 12; i++) {
      for (const off of [0x7ffc, 0x8000, 0x8020, 0xfffc, 0x10000]) {
        rw.check(pread(dev, REGION_OFFSET(i) + off, 4)[0], perRegion(i, off), `read region ${i} @${off.toString(16)}`);
        if (i !== 7) rw.check(pwrite(dev, REGION_OFFSET(i) + off, fill(4, i)), perRegion(i, off), `write region ${i} @${off.toString(16)}`);
      }
    }
    // Positions that alias BAR2+0x8000 through index<<40 arithmetic, negative or non-u64-safe values.
    const aliases = [
      REGION_OFFSET(3), REGION_OFFSET(3) - END, REGION_OFFSET(3) - 4, REGION_OFFSET(1) + 2 ** 40 + END,
      REGION_OFFSET(2) + END - 2 ** 40, -1, -4, -END, -(2 ** 40) + END, -REGION_OFFSET(2) - END,
      2 ** 64 - END, 2 ** 63 + BAR2 + END, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER - 3, BAR2 + END + 0.5,
      NaN, Infinity, -Infinity, REGION_OFFSET(2 + 2 ** 12) + END,
    ];
    for (const pos of aliases) {
      for (const n of [1, 4, 8, 16]) {
        rw.check(pread(dev, pos, n)[0], EINVAL, `read alias ${pos}+${n}`);
        rw.check(pwrite(dev, pos, fill(n, 3)), EINVAL, `write alias ${pos}+${n}`);
      }
    }
    expect(rw.attempts).toBe(2 * offs.length * sizes.length + 13 * 5 * 2 - 5 + aliases.length * 8);
    expect(rw.attempts).toBe(2301);
    expectUntouched(host, before);
  });

  it('mmap: every start/len touching the upper half is EINVAL; allowed views fault past their end; 64 KiB pages refuse BAR2', () => {
    const { host, vm } = liveRig();
    const dev = vm!.device;
    const before = migState(host);
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    const t = new Tally();
    const starts: number[] = [];
    for (let s = 0; s <= 0x11000; s += PAGE) starts.push(s);
    starts.push(0x7ffc, 0x8004, 0x800, 2 ** 32, 2 ** 40 - PAGE);
    const lens = [1, 0xfff, 0x1000, 0x1001, 0x2000, 0x7fff, 0x8000, 0x8001, 0x10000, 0x20000];
    const views: VfioMapping[] = [];
    for (const s of starts) {
      for (const len of lens) {
        const rounded = Math.ceil(len / PAGE) * PAGE;
        const ok = s % PAGE === 0 && s + rounded <= END;
        const m = dev.mmap(BAR2 + s, len);
        if (typeof m === 'number') {
          t.check(m, ok ? 0 : EINVAL, `mmap ${s.toString(16)}+${len.toString(16)}`);
        } else {
          t.check(ok ? m.length : -1, rounded, `mmap ${s.toString(16)}+${len.toString(16)}`);
          views.push(m);
        }
      }
    }
    expect(t.attempts).toBe(230);
    // Hand-counted: start 0 takes 7 lengths (<= 32 KiB), starts 0x1000..0x6000 take 5 (<= 8 KiB), 0x7000 takes 3.
    expect(views.length).toBe(7 + 6 * 5 + 3);
    // Past-the-end accesses of every allowed view, toward the upper half and elsewhere.
    let faults = 0;
    for (const m of views) {
      const toHigh = END - m.offset;
      for (const off of [m.length, m.length + 4, toHigh, toHigh + 0x20, 0x10000 - m.offset - 4, -4, -m.offset - 8, 2 ** 40, m.length - 1, NaN]) {
        t.check(m.read32(off), 0xffffffff, 'read past view');
        m.write32(off, 0x5a5a5a5a);
        const [lo, hi] = m.read64(off);
        t.check(lo === 0xffffffff && hi === 0xffffffff ? 0 : -1, 0, 'read64 past view');
        m.write64(off, 1, 2);
        t.check(m.read8(off + 1e9), 0xff, 'read8 far');
        m.write16(off, 0xbeef);
        faults += 6;
      }
      expect(m.faults).toBe(60);
      m.unmap();
      t.check(m.read32(0), 0xffffffff, 'read after unmap');
      faults++;
    }
    expect(views.reduce((a, m) => a + m.faults, 0)).toBe(faults);
    t.check(dev.mmap(REGION_OFFSET(3), PAGE) as number, EINVAL, 'mmap BAR3');
    t.check(dev.mmap(REGION_OFFSET(3) - PAGE, 2 * PAGE) as number, EINVAL, 'mmap straddling BAR2 end of region');
    expect(audit.count('guest', 'low')).toBe(0);
    expectUntouched(host, before);

    // 64 KiB host pages: no BAR2 mmap at all, whatever the start and length.
    const big = liveRig({ driver: { hostPageSize: 65536 } });
    const before64 = migState(big.host);
    big.host.acc.qm.vf(1)!.audit.clear();
    const t64 = new Tally();
    for (const s of [0, 0x1000, 0x7000, 0x8000, 0x10000]) {
      for (const len of [1, 0x1000, 0x8000, 0x10000]) t64.check(big.vm!.device.mmap(BAR2 + s, len) as number, EINVAL, `64K mmap ${s}+${len}`);
    }
    stillHidden(big.vm!.device, t64);
    expect(t64.attempts).toBe(25);
    expectUntouched(big.host, before64);
  });

  it('VFIO_DEVICE_IOEVENTFD at and across 0x8000, every size and flag, aliasing offsets', () => {
    const { host, vm } = liveRig();
    const dev = vm!.device;
    const before = migState(host);
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    const { fd, file: efd } = host.fds.eventfd();
    const t = new Tally();
    const offs: number[] = [];
    for (let o = 0x7ff0; o <= 0x8010; o++) offs.push(o);
    offs.push(0x8020, 0xfff8, 0xfffc, 0x10000, 0x20000, 2 ** 40 - 8);
    let fired = 0;
    for (const off of offs) {
      for (const flags of [0, 1, 2, 3, 4, 5, 8, 12, 15, 16, 0x104]) {
        const size = flags & 0xf;
        const ok = (size === 1 || size === 2 || size === 4 || size === 8) && flags === size && off + size <= END;
        const r = ioeventfd(dev, BigInt(BAR2 + off), flags, fd);
        t.check(r, ok ? 0 : EINVAL, `ioeventfd ${off.toString(16)} flags ${flags}`);
        if (r === 0) {
          efd.signal();
          fired++;
          expect(ioeventfd(dev, BigInt(BAR2 + off), flags, -1)).toBe(0);
        }
      }
    }
    // u64 offsets that alias BAR2+0x8000 by overflow or high bits, BAR3, and malformed headers.
    for (const o of [(1n << 63n) | (2n << 40n) | 0x8000n, (1n << 64n) - 1n, 3n << 40n, (3n << 40n) - 4n, (2n << 40n) + 0x8000n + (1n << 42n)]) {
      for (const flags of [1, 2, 4, 8]) t.check(ioeventfd(dev, o, flags, fd), EINVAL, `ioeventfd alias ${o.toString(16)}`);
    }
    t.check(ioeventfd(dev, BigInt(BAR2 + END), 4, fd, 31), EINVAL, 'argsz 31');
    t.check(ioeventfd(dev, BigInt(BAR2 + END), 4, fd, 8), EINVAL, 'argsz 8');
    t.check(ioeventfd(dev, BigInt(BAR2 + END), 4, fd, 32, 24), EFAULT, 'short buffer');
    t.check(ioeventfd(dev, BigInt(BAR2 + END), 4, -2), EINVAL, 'fd -2');
    expect(t.attempts).toBe(offs.length * 11 + 20 + 4);
    expect(t.attempts).toBe(453);
    // Only the low-half registrations wrote, each once, all below 0x8000.
    expect(fired).toBe(16 + 15 + 13 + 9);
    expect(audit.count('guest', 'low')).toBe(fired);
    expectUntouched(host, before);
  });

  it('config space: BAR2/BAR3 rewrites and sizing, command bits, MSI/PCIe/extended caps, gaps, FLR', () => {
    const { host, vm } = liveRig();
    const dev = vm!.device;
    const audit = host.acc.qm.vf(1)!.audit;
    const before = migState(host);
    audit.clear();
    const t = new Tally();
    // BAR sizing: the 64-bit BAR2 sizes as the 64 KiB hardware BAR (memory, 64-bit type 0x4).
    t.check(cfgWrite(dev, 0x18, 4, 0xffffffff), 4, 'size BAR2');
    t.check(cfgWrite(dev, 0x1c, 4, 0xffffffff), 4, 'size BAR3');
    expect(cfgRead(dev, 0x18, 4)).toBe(0xffff0004);
    expect(cfgRead(dev, 0x1c, 4)).toBe(0xffffffff);
    stillHidden(dev, t);
    // Moving/aliasing the BAR: any value, including overlapping the old upper half.
    for (const [lo, hi] of [[0x8000, 0], [0xffff8000, 0xffffffff], [0, 0], [0x10000, 1], [0xfffffff0, 0], [0x12345678, 0x9abcdef0]]) {
      t.check(cfgWrite(dev, 0x18, 4, lo!), 4, 'BAR2 lo');
      t.check(cfgWrite(dev, 0x1c, 4, hi!), 4, 'BAR3 hi');
      t.check(cfgWrite(dev, 0x18, 8, 0), 8, 'BAR2+3 as one 8-byte write');
      stillHidden(dev, t);
    }
    for (const bar of [0x10, 0x14, 0x20, 0x24, 0x30]) {
      t.check(cfgWrite(dev, bar, 4, 0xffffffff), 4, `BAR reg ${bar.toString(16)}`);
      expect(cfgRead(dev, bar, 4)).toBe(bar === 0x20 ? 0xfc000004 : bar === 0x24 ? 0xffffffff : 0); // BAR4 is 64 MiB, 64-bit
    }
    stillHidden(dev, t);
    for (const cmd of [0x0000, 0x0002, 0x0006, 0xffff, 0x0400, 0x0406]) {
      t.check(cfgWrite(dev, 0x04, 2, cmd), 2, `command ${cmd}`);
      stillHidden(dev, t);
    }
    const msi = findCap(dev, 0x05);
    const exp = findCap(dev, 0x10);
    expect(msi).toBeGreaterThan(0);
    expect(exp).toBeGreaterThan(0);
    for (let o = msi; o < msi + 24; o += 2) for (const v of [0xffff, 0]) t.check(cfgWrite(dev, o, 2, v), 2, `MSI +${o - msi}`);
    stillHidden(dev, t);
    for (let o = exp; o < exp + 0x3c; o += 2) {
      // Device Control's bit 15 is Initiate FLR: it has its own attempt below.
      for (const v of [o === exp + 8 ? 0x7fff : 0xffff, 0]) t.check(cfgWrite(dev, o, 2, v), 2, `PCIe +${o - exp}`);
    }
    stillHidden(dev, t);
    for (let o = 0x100; o < 0x1000; o += 4) t.check(cfgWrite(dev, o, 4, 0xffffffff), 4, `ext ${o.toString(16)}`);
    stillHidden(dev, t);
    expect(t.attempts).toBe(1160);
    expectUntouched(host, before);

    // FLR through config space, then a storm of every dword of the 4 KiB: the FLR legitimately
    // resets the EQ/AEQ (hardware reset values are 0), and the half stays hidden.
    t.check(cfgWrite(dev, exp + 8, 2, 0x8000), 2, 'initiate FLR');
    const afterFlr = migState(host);
    expect(afterFlr.eq.dw).toEqual([0, 0, 0, 0, 0, 0, 0]);
    expect(afterFlr.aeq.dw).toEqual([0, 0, 0, 0, 0, 0, 0]);
    stillHidden(dev, t);
    for (const v of [0xffffffff, 0x00000000, 0x55aa55aa]) {
      for (let o = 0; o < 0x1000; o += 4) t.check(cfgWrite(dev, o, 4, v), 4, `storm ${o.toString(16)}`);
      stillHidden(dev, t);
    }
    expect(t.attempts).toBe(1160 + 1 + 5 + 3 * (1024 + 5));
    expectUntouched(host, afterFlr);
  });

  it('DMA aimed at the VF BAR2 and the PF migration window faults in the IOMMU, never reaches MMIO', () => {
    const { host, vm } = liveRig({ profile: 'zip-v4' });
    // The host assigns BAR addresses (as firmware would): PF BAR2 and the SR-IOV VF BAR2.
    const pfFn = host.pf.fn;
    const pfBar2 = 0x20_0000_0000;
    const vfBar2 = 0x30_0000_0000;
    pfFn.configWrite(0x18, 4, (pfBar2 % 2 ** 32) | 0x4);
    pfFn.configWrite(0x1c, 4, Math.floor(pfBar2 / 2 ** 32));
    const sriov = (pfFn as PciPf).sriov.offset;
    pfFn.configWrite(sriov + 0x24 + 8, 4, (vfBar2 % 2 ** 32) | 0x4);
    pfFn.configWrite(sriov + 0x24 + 12, 4, Math.floor(vfBar2 / 2 ** 32));
    expect(pfFn.barAddress(2)).toBe(pfBar2);
    expect(host.vf(1).fn.barAddress(2)).toBe(vfBar2);
    const before = migState(host);
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    const domain = vm!.device.core.iommuDomain!;
    const drv = vm!.driver!;
    const targets = [vfBar2, vfBar2 + END, vfBar2 + 0x8020, vfBar2 + 0xfff0, pfBar2, pfBar2 + PF_MIG_WINDOW(1) + 0x1c00, pfBar2 + PF_MIG_WINDOW(1) + 0x1c20];
    const t = new Tally();
    // Mailbox context loads (op 0: the device reads the context from `addr`) and stores (op 1).
    for (const addr of targets) {
      for (const cmd of [0x0, 0x1, 0x2, 0x3]) {
        for (const op of [0, 1] as const) {
          const f0 = domain.faultCount;
          let outcome = 0;
          try {
            drv.mailbox.sendAddr(cmd, op, 0, addr);
          } catch (e) {
            outcome = e instanceof KernelError ? -e.errno : -1;
          }
          t.check(outcome, errno('EIO'), `mailbox cmd ${cmd} op ${op} @${addr.toString(16)}`);
          const last = domain.faults.at(-1)!;
          expect(domain.faultCount).toBe(f0 + 1);
          expect(last.iova).toBe(addr);
          expect(last.reason).toBe('unmapped');
        }
      }
    }
    expectUntouched(host, before);
    // An SQE whose source and destination point at the MMIO ranges.
    const qp = drv.createQp();
    for (const addr of targets) {
      const f0 = domain.faultCount;
      let done = '';
      qp.submit({
        fill(sqe) {
          const dv = new DataView(sqe.buffer, sqe.byteOffset, sqe.length);
          dv.setUint32(16, 256, true); // input length
          dv.setUint32(28, 3 << 28, true); // SQE type V3
          dv.setUint32(36, 0x01, true); // deflate, flat buffers
          dv.setUint32(56, 4096, true); // dest avail
          dv.setUint32(72, addr % 2 ** 32, true);
          dv.setUint32(76, Math.floor(addr / 2 ** 32), true);
          dv.setUint32(80, (addr + 0x100) % 2 ** 32, true);
          dv.setUint32(84, Math.floor((addr + 0x100) / 2 ** 32), true);
        },
        complete() { done = 'complete'; },
        fail(err) { done = `fail ${err.name}`; },
      });
      host.sched.advance(5_000_000);
      drv.poll();
      t.note(done);
      expect(done).not.toBe('');
      expect(domain.faultCount).toBeGreaterThan(f0);
      expect(domain.faults.slice(f0 - domain.faultCount).every((f) => f.iova >= addr && f.iova < addr + 0x200 && f.reason === 'unmapped')).toBe(true);
    }
    expect(t.attempts).toBe(targets.length * 8 + targets.length);
    expect(audit.count('guest', 'high')).toBe(0);
    // Completions of the faulted SQEs legitimately advance the EQ; where it lives does not move.
    const after = migState(host);
    expect([after.eq.base, after.aeq.base, after.eq.dw[1], after.aeq.dw[1]]).toEqual([before.eq.base, before.aeq.base, before.eq.dw[1], before.aeq.dw[1]]);
  });

  it('v1 protocol region: only the 208-byte migration info + data, never the BAR2 upper half', () => {
    const { host, vm } = liveRig({ driver: { protocol: 'v1' } });
    const dev = vm!.device;
    const before = migState(host);
    host.acc.qm.vf(1)!.audit.clear();
    const t = new Tally();
    const mig = REGION_OFFSET(9);
    const r9 = regionInfo(dev, 9);
    t.check(r9.ret, 0, 'region 9 info');
    expect(r9.size).toBe(208n);
    expect(r9.flags & 4).toBe(0); // no MMAP
    for (const i of [10, 11, 12]) t.check(regionInfo(dev, i).ret, EINVAL, `region ${i}`);
    for (const off of [208, 209, 0x1000, 0x7ffc, END, 0x8020, 0xfffc, 0x10000, 2 ** 40 - 1]) {
      for (const n of [1, 4, 8]) {
        t.check(pread(dev, mig + off, n)[0], EINVAL, `v1 read ${off.toString(16)}`);
        t.check(pwrite(dev, mig + off, fill(n, 9)), EINVAL, `v1 write ${off.toString(16)}`);
      }
    }
    // The data window is a buffer, readable only while saving and writable only while resuming.
    t.check(pread(dev, mig + 200, 64)[0], EINVAL, 'data read while RUNNING');
    t.check(pwrite(dev, mig + 32, fill(16, 5)), EINVAL, 'data write while RUNNING');
    for (const off of [0, 0x1000, 0x8000]) t.check(dev.mmap(mig + off, PAGE) as number, EINVAL, 'v1 mmap');
    stillHidden(dev, t);
    expect(t.attempts).toBe(1 + 3 + 54 + 2 + 3 + 5);
    expectUntouched(host, before);
  });

  it('PF-control mode (V4): whole VF BAR2 exposed, its upper half inert, PF window unreachable from the VF fd', () => {
    const { host, vm } = liveRig({ profile: 'zip-v4', driver: { pfControl: true } });
    const dev = vm!.device;
    const before = migState(host);
    // The PF window holds the live EQC (dw1 = EQ base), read from the PF side.
    expect(before.pfWindow[1]).toBe(before.eq.dw[1]);
    const audit = host.acc.qm.vf(1)!.audit;
    audit.clear();
    const t = new Tally();
    expect(regionInfo(dev, 2).size).toBe(0x10000n);
    let highAccesses = 0;
    for (let off = END; off < 0x10000; off += 0x40) {
      const [n, b] = pread(dev, BAR2 + off, 4);
      t.check(n, 4, 'read inert');
      expect(new DataView(b.buffer).getUint32(0, true)).toBe(0xffffffff);
      t.check(pwrite(dev, BAR2 + off, fill(4, off)), 4, 'write inert');
      highAccesses += 2;
    }
    for (const off of [0x8000, 0x8020]) {
      for (let i = 0; i < 28; i += 4) {
        t.check(pwrite(dev, BAR2 + off + i, new Uint8Array([0xef, 0xbe, 0xad, 0xde])), 4, 'write EQC/AEQC dw');
        highAccesses++;
      }
    }
    // Past the BAR: the fd has no offset that reaches the PF (its BAR2 window is 0x180000+).
    for (const off of [0x10000, 0x10004, 0x180000 + 0x2000 + 0x1c00, 0x182000, 0x3fffff, 2 ** 40 - 4]) {
      t.check(pread(dev, BAR2 + off, 4)[0], EINVAL, 'read past BAR');
      t.check(pwrite(dev, BAR2 + off, fill(4, 2)), EINVAL, 'write past BAR');
    }
    t.check(pread(dev, BAR2 + 0xfffc, 16)[0], 4, 'clipped at 64K');
    highAccesses++;
    const m = dev.mmap(BAR2, 0x10000) as VfioMapping;
    expect(typeof m).not.toBe('number');
    t.check(m.read32(0x8004), 0xffffffff, 'mapped read inert');
    m.write32(0x8004, 0x11111111);
    m.write64(0x8020, 1, 2);
    highAccesses += 3;
    t.check(m.read32(0x10000), 0xffffffff, 'past mapping');
    t.check(dev.mmap(BAR2, 0x11000) as number, EINVAL, 'mmap past 64K');
    const { fd, file } = host.fds.eventfd();
    t.check(ioeventfd(dev, BigInt(BAR2 + 0x8004), 4, fd), 0, 'ioeventfd inert half');
    file.signal();
    highAccesses++;
    t.check(ioeventfd(dev, BigInt(BAR2 + 0x10000), 4, fd), EINVAL, 'ioeventfd past 64K');
    m.unmap();
    expect(t.attempts).toBe(1024 + 14 + 12 + 1 + 1 + 1 + 1 + 1 + 1);
    // The upper-half accesses hit the inert VF half (counted as such); the live state did not move.
    expect(audit.count('guest', 'high')).toBe(highAccesses);
    expect(migState(host)).toEqual(before);
  });
});
