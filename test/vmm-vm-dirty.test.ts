/**
 * Dirty logging from the VMM side (iommu-notifiers-and-dirty-ring.md section 2): vCPU stores
 * land in their ring once per page until the page is reset, stores without a vCPU land in
 * the WITH_BITMAP backup, a soft-full ring exits and the run loop harvests + resets before
 * the vCPU continues, the backup bitmap is collected last, and device DMA is not a CPU write.
 */
import { describe, expect, it } from 'vitest';
import { IOMMU_DIRTY_NO_CLEAR } from '../src/iommu/domain.js';
import type { Vm } from '../src/vmm/vm.js';
import { errnoCode as code, smallSources } from './vmm-vm-helpers.js';

const PAGE = 4096;
const source = smallSources();

/** Clears every ring, the reaped set and the backup bitmap. */
function settle(vm: Vm): void {
  vm.collectDirty(() => {});
  vm.dirtyRings.takeDirtyLog(vm.ramSlot);
}

function collect(vm: Vm): number[] {
  const pages: number[] = [];
  vm.collectDirty((slot, off) => {
    expect(slot).toBe(vm.ramSlot);
    pages.push(off);
  });
  return pages;
}

/** A GPA in the upper half of RAM, far from anything the guest driver allocated. */
function gpaOfPage(vm: Vm, page: number): number {
  return vm.ramBase + page * PAGE;
}

describe('vCPU stores and the dirty ring (spec 2: write protection)', () => {
  it('the first store to a page after reset pushes one entry; later stores push nothing', () => {
    const { vm } = source();
    settle(vm);
    const ring = vm.vcpu(1).ring;
    const p = 3000;
    const pushes = ring.pushes;
    vm.ramWrite(gpaOfPage(vm, p) + 10, Uint8Array.of(1, 2, 3), 1);
    vm.ramWrite(gpaOfPage(vm, p) + 100, Uint8Array.of(4), 1);
    expect(ring.pushes - pushes).toBe(1);
    expect(collect(vm)).toEqual([p]);
    // reset re-protected the page: the next store pushes again
    vm.ramWrite(gpaOfPage(vm, p), Uint8Array.of(9), 1);
    expect(ring.pushes - pushes).toBe(2);
    expect(vm.ramRead(gpaOfPage(vm, p) + 10, 3)).toEqual(Uint8Array.of(1, 2, 3));
  });

  it('a store across three pages pushes the three pages in order', () => {
    const { vm } = source();
    settle(vm);
    vm.ramWrite(gpaOfPage(vm, 3001) - 8, new Uint8Array(2 * PAGE).fill(7), 1);
    expect(collect(vm)).toEqual([3000, 3001, 3002]);
  });

  it('a store larger than one step (reserved pages) is split and every page is logged', () => {
    const { vm } = source();
    settle(vm);
    const reserved = vm.dirtyRings.reserved;
    expect(reserved).toBe(64);
    vm.vcpu(1).fill(gpaOfPage(vm, 2000), 100 * PAGE, 0x5a);
    const pages = collect(vm);
    expect(pages).toEqual(Array.from({ length: 100 }, (_, i) => 2000 + i));
    expect(vm.ramRead(gpaOfPage(vm, 2099) + PAGE - 1, 1)[0]).toBe(0x5a);
  });

  it('a store without a vCPU goes to the backup bitmap, not to any ring', () => {
    const { vm } = source();
    settle(vm);
    const pushes = vm.vcpus.map((v) => v.ring.pushes);
    vm.ramWrite(gpaOfPage(vm, 3500) + 4, Uint8Array.of(0xee));
    expect(vm.vcpus.map((v) => v.ring.pushes)).toEqual(pushes);
    const log = vm.dirtyRings.takeDirtyLog(vm.ramSlot);
    expect(log.popcount()).toBe(1);
    expect(log.get(3500)).toBe(true);
    expect(vm.stats.noVcpuWrites).toBe(1);
    expect(collect(vm)).toEqual([]);
  });

  it('stores outside RAM fault (EFAULT) and stores while paused are refused (EBUSY)', () => {
    const { vm } = source();
    expect(code(() => vm.ramWrite(vm.ramBase - 1, Uint8Array.of(1), 0))).toBe('EFAULT');
    expect(code(() => vm.ramWrite(vm.ramBase + vm.ramBytes - 1, Uint8Array.of(1, 2), 1))).toBe('EFAULT');
    expect(code(() => vm.ramWrite(vm.ramBase + vm.ramBytes, Uint8Array.of(1)))).toBe('EFAULT');
    vm.pauseVcpus();
    expect(code(() => vm.ramWrite(vm.ramBase + 0x80_0000, Uint8Array.of(1), 1))).toBe('EBUSY');
    vm.resumeVcpus();
    expect(code(() => vm.ramWrite(vm.ramBase + 0x80_0000, Uint8Array.of(1), 1))).toBe('no error');
  });
});

describe('soft-full ring: DIRTY_RING_FULL exit, harvest + reset, continue (spec 2 worked example)', () => {
  it('256-entry ring, 64 reserved: stores 1..191 run on, store 192 exits and is reaped', () => {
    const { vm } = source({ dirtyRingEntries: 256 });
    settle(vm);
    const v = vm.vcpu(1);
    expect(v.ring.softLimit).toBe(192);
    const exits0 = vm.stats.ringFullExits;
    for (let i = 0; i < 191; i++) vm.ramWrite(gpaOfPage(vm, 1000 + i), Uint8Array.of(i & 0xff, 1), 1);
    expect(vm.stats.ringFullExits).toBe(exits0);
    expect(v.ring.used).toBe(191);
    vm.ramWrite(gpaOfPage(vm, 1191), Uint8Array.of(191 & 0xff, 1), 1);
    expect(vm.stats.ringFullExits).toBe(exits0 + 1);
    expect(v.stats.fullExits).toBe(1);
    // the run loop harvested and reset: the ring is empty and the pages are in `reaped`
    expect(v.ring.used).toBe(0);
    expect(vm.reaped.popcount()).toBe(192);
    expect(v.ring.run()).toBe(0);
    for (let i = 192; i < 200; i++) vm.ramWrite(gpaOfPage(vm, 1000 + i), Uint8Array.of(i & 0xff, 1), 1);
    expect(v.ring.used).toBe(8);
    // a migration pass sees all 200 pages: reaped ones plus the ring's
    const pages = collect(vm).sort((a, b) => a - b);
    expect(pages).toEqual(Array.from({ length: 200 }, (_, i) => 1000 + i));
    expect(vm.reaped.popcount()).toBe(0);
    for (let i = 0; i < 200; i++) expect(vm.ramRead(gpaOfPage(vm, 1000 + i), 2)).toEqual(Uint8Array.of(i & 0xff, 1));
  });

  it('a busy guest driver keeps completing jobs on a tiny ring (exits are reaped transparently)', () => {
    const s = source({ dirtyRingEntries: 256, workload: { dirtyPagesPerMs: 400, dirtyRegionPages: 512, jobsPerMs: 10 } });
    const w = s.workload!;
    s.vm.run(2_000_000);
    w.drain();
    const v = w.verify();
    expect(v.ok).toBe(true);
    expect(v.completed).toBeGreaterThan(10);
    expect(s.vm.stats.ringFullExits).toBeGreaterThan(0);
  });
});

describe('collection order for the final pass (spec 2: the bitmap is collected last)', () => {
  it('finalCollect hands over reaped and ring pages, returns the backup bitmap, then traps late stores', () => {
    const { vm } = source({ dirtyRingEntries: 256 });
    settle(vm);
    for (let i = 0; i < 192; i++) vm.ramWrite(gpaOfPage(vm, 1000 + i), Uint8Array.of(1), 1); // one reap
    vm.ramWrite(gpaOfPage(vm, 3000), Uint8Array.of(1), 0); // ring of vCPU 0
    vm.ramWrite(gpaOfPage(vm, 3001), Uint8Array.of(1)); // backup bitmap
    vm.pauseVcpus();
    const seen: number[] = [];
    const fin = vm.finalCollect((_, off) => seen.push(off));
    expect(seen.slice(0, 192)).toEqual(Array.from({ length: 192 }, (_, i) => 1000 + i));
    expect(seen.slice(192)).toEqual([3000]);
    expect(fin.ringEntries).toBe(1);
    const bm = fin.bitmaps.get(vm.ramSlot)!;
    expect(bm.popcount()).toBe(1);
    expect(bm.get(3001)).toBe(true);
    expect(vm.dirtyRings.armed).toBe(true);
    expect(vm.dirtyRings.lateWrites).toBe(0);
    vm.ramWrite(gpaOfPage(vm, 3002), Uint8Array.of(1)); // emulation store after the final collection: a bug
    expect(vm.dirtyRings.lateWrites).toBe(1);
    expect(vm.dirtyRings.firstLateWrite).toEqual({ slot: 0, offset: 3002, vcpu: -1 });
    vm.dirtyRings.disarm();
  });
});

describe('guest driver stores are vCPU 0 writes; device DMA is not a CPU write', () => {
  it('a job dirties the SQ page through vCPU 0; the CQ page is dirtied only in the IOMMU domain', () => {
    const s = source();
    const vm = s.vm;
    const a = vm.accel!;
    a.compress(Buffer.from('warm up '.repeat(64)), 'deflate'); // creates the queue pair
    settle(vm);
    const qp = vm.driver!.queuePairs[0]!;
    const pageOf = (gpa: number) => (gpa - vm.ramBase) / PAGE;
    const sqPage = pageOf(qp.sqBase);
    const cqPage = pageOf(qp.cqBase);
    expect(Number.isInteger(cqPage)).toBe(true);
    const domain = vm.iommuDomain!;
    domain.setDirtyTracking(true);
    a.compress(Buffer.from('one more job '.repeat(64)), 'deflate');
    const perVcpu = vm.vcpus.map((v) => {
      const pages: number[] = [];
      v.ring.harvest((_, off) => pages.push(off));
      return pages;
    });
    vm.dirtyRings.resetAll();
    expect(perVcpu[0]).toContain(sqPage);
    expect(perVcpu[0]).not.toContain(cqPage);
    expect(perVcpu[1]).toEqual([]);
    const bits = new Uint8Array(8);
    domain.readAndClearDirty(qp.cqBase, PAGE, bits, 0, IOMMU_DIRTY_NO_CLEAR);
    expect(bits[0]! & 1).toBe(1);
    domain.setDirtyTracking(false);
  });

  it('the busy application dirties its region through its own vCPU at the configured rate', () => {
    const s = source({ workload: { dirtyPagesPerMs: 100, dirtyRegionPages: 64, jobsPerMs: 0 } });
    const vm = s.vm;
    const w = s.workload!;
    settle(vm);
    const pushes1 = vm.vcpu(1).ring.pushes;
    vm.run(1_000_000);
    expect(w.stats.pagesDirtied).toBe(100);
    const regionFirst = (w.regionBase - vm.ramBase) / PAGE;
    const pages = new Set(collect(vm));
    expect([...pages].sort((a, b) => a - b)).toEqual(Array.from({ length: 64 }, (_, i) => regionFirst + i));
    expect(vm.vcpu(1).ring.pushes - pushes1).toBe(64);
  });
});

describe('guest tasks wait while the vCPUs are paused', () => {
  it('a guest task that comes due while paused runs only after resume', () => {
    const { vm } = source();
    let ran = 0;
    vm.clock.schedule(1_000, () => ran++);
    vm.pauseVcpus();
    vm.run(10_000);
    expect(ran).toBe(0);
    expect(vm.stats.deferredTasks).toBe(1);
    vm.resumeVcpus();
    vm.run(0);
    expect(ran).toBe(1);
  });
});
