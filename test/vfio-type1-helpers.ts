/**
 * Shared scaffolding for the type1/group tests: a process (address space + fd table), guest
 * RAM mapped into it, a container with groups set up through the real ioctls, tiny group
 * members, and a pinning "vendor driver" for emulated groups. Expected values in tests are
 * written out by hand; nothing here computes them.
 */
import type { IommuDomain } from '../src/iommu/domain.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import { UserAddressSpace } from '../src/mem/user-space.js';
import { VfioContainer } from '../src/vfio/container.js';
import type { VfioContainerOptions } from '../src/vfio/container.js';
import { FdTable, VfioFile } from '../src/vfio/fd.js';
import { VfioGroup } from '../src/vfio/group.js';
import type { VfioGroupMember } from '../src/vfio/group.js';
import { VFIO_TYPE1v2_IOMMU } from '../src/uapi/vfio.js';

export const P = 4096;
export const B = 0x100000;
export const IOMMU_R = 1;
export const IOMMU_W = 2;

/** A device fd that does nothing but exist. */
export class TestDeviceFile extends VfioFile {}

/** A group member that records the domains it was given. */
export class TestMember implements VfioGroupMember {
  domain: IommuDomain | null = null;
  readonly domainLog: Array<IommuDomain | null> = [];
  opens = 0;
  openError: Error | null = null;
  constructor(readonly name: string) {}
  setIommu(domain: IommuDomain | null): void {
    this.domain = domain;
    this.domainLog.push(domain);
  }
  openDevice(): VfioFile {
    if (this.openError) throw this.openError;
    this.opens++;
    return new TestDeviceFile();
  }
}

/**
 * The vendor driver of an emulated device: pins pages, remembers its pins, and unpins every
 * one of them inside a range when type1 sends DMA_UNMAP (what the spec requires of vendors).
 */
export class PinningVendor {
  readonly pins = new Map<number, number>();
  readonly notified: Array<[number, number]> = [];
  /** When false the notifier ignores the request (a misbehaving vendor). */
  cooperative = true;
  /** Called at the start of each notification, before unpinning. */
  onNotify: ((iova: number, size: number) => void) | null = null;
  constructor(readonly group: VfioGroup) {
    group.registerDmaUnmapNotifier((iova, size) => this.notify(iova, size));
  }
  pin(iova: number, npage = 1, prot = IOMMU_R): void {
    this.group.pinPages(iova, npage, prot);
    for (let i = 0; i < npage; i++) {
      const a = iova + i * P;
      this.pins.set(a, (this.pins.get(a) ?? 0) + 1);
    }
  }
  unpin(iova: number, npage = 1): void {
    this.group.unpinPages(iova, npage);
    for (let i = 0; i < npage; i++) {
      const a = iova + i * P;
      const n = (this.pins.get(a) ?? 0) - 1;
      if (n > 0) this.pins.set(a, n);
      else this.pins.delete(a);
    }
  }
  private notify(iova: number, size: number): void {
    this.notified.push([iova, size]);
    this.onNotify?.(iova, size);
    if (!this.cooperative) return;
    for (const [a, n] of [...this.pins]) {
      if (a < iova || a >= iova + size) continue;
      for (let k = 0; k < n; k++) this.unpin(a);
    }
  }
}

export interface GroupSpec {
  iommuBacked: boolean;
  /** Member names (default one member "dev<id>"). */
  members?: string[];
}

export interface Rig {
  user: UserAddressSpace;
  fds: FdTable;
  container: VfioContainer;
  cfd: number;
  groups: VfioGroup[];
  gfds: number[];
  members: TestMember[][];
  /** Guest RAM, mapped in the process at ramVaddr; iova X uses vaddr ramVaddr + (X - ramIova). */
  ram: SparseMemory;
  ramVaddr: number;
  ramIova: number;
  /** The vaddr that backs iova (for MAP_DMA). */
  va(iova: number): number;
}

export interface RigOptions extends Partial<Pick<VfioContainerOptions, 'legacy' | 'gaw' | 'dmaEntryLimit'>> {
  groups?: GroupSpec[];
  /** IOMMU model for SET_IOMMU, or null to leave the container unset. Default TYPE1v2. */
  iommuType?: number | null;
  ramSize?: number;
  ramIova?: number;
}

/** A container with groups attached through SET_CONTAINER and SET_IOMMU; throws if setup fails. */
export function makeRig(opts: RigOptions = {}): Rig {
  const user = new UserAddressSpace();
  const fds = new FdTable();
  const container = new VfioContainer({ user, fds, legacy: opts.legacy, gaw: opts.gaw, dmaEntryLimit: opts.dmaEntryLimit });
  const cfd = fds.install(container);
  const specs = opts.groups ?? [{ iommuBacked: true }];
  const groups: VfioGroup[] = [];
  const gfds: number[] = [];
  const members: TestMember[][] = [];
  specs.forEach((s, i) => {
    const g = new VfioGroup({ id: i + 1, fds, iommuBacked: s.iommuBacked });
    const ms = (s.members ?? [`dev${i + 1}`]).map((n) => new TestMember(n));
    ms.forEach((m) => g.addMember(m));
    const gfd = g.openFd();
    if (gfd < 0) throw new Error(`open group ${i + 1}: ${gfd}`);
    const r = g.setContainer(cfd);
    if (r !== 0) throw new Error(`SET_CONTAINER group ${i + 1}: ${r}`);
    groups.push(g);
    gfds.push(gfd);
    members.push(ms);
  });
  const type = opts.iommuType === undefined ? VFIO_TYPE1v2_IOMMU : opts.iommuType;
  if (type !== null) {
    const r = container.setIommu(type);
    if (r !== 0) throw new Error(`SET_IOMMU: ${r}`);
  }
  const ramSize = opts.ramSize ?? 64 * 2 ** 20;
  const ram = new SparseMemory(ramSize);
  const ramVaddr = user.mapMemory(ram, 0, ramSize);
  const ramIova = opts.ramIova ?? B;
  return { user, fds, container, cfd, groups, gfds, members, ram, ramVaddr, ramIova, va: (iova) => ramVaddr + (iova - ramIova) };
}

/** MAP_DMA of [iova, iova+size) backed by the rig's RAM; returns the ioctl result. */
export function mapRam(rig: Rig, iova: number, size: number, flags?: number): number {
  return rig.container.mapDma({ vaddr: rig.va(iova), iova, size, flags });
}

/** A zeroed user buffer of `bytes` bytes and a live view of it. */
export function userBuffer(user: UserAddressSpace, bytes: number): { data: number; view: Uint8Array } {
  const data = user.alloc(bytes);
  return { data, view: user.view(data, bytes) };
}

/** Set bit indices of a u64-LE byte bitmap (byte i>>3, mask 1<<(i&7)). */
export function bitsOf(bytes: Uint8Array): number[] {
  const out: number[] = [];
  for (let i = 0; i < bytes.length * 8; i++) if ((bytes[i >> 3]! >> (i & 7)) & 1) out.push(i);
  return out;
}

/** GET_BITMAP of [iova, iova+size) into a fresh zeroed user buffer; returns ret and set bits. */
export function getBits(rig: Rig, iova: number, size: number): { ret: number; bits: number[]; bytes: Uint8Array } {
  const nbytes = Math.ceil(size / P / 64) * 8;
  const buf = userBuffer(rig.user, nbytes);
  const ret = rig.container.getDirtyBitmap(iova, size, { size: nbytes, data: buf.data });
  return { ret, bits: bitsOf(buf.view), bytes: buf.view };
}

/** UNMAP with GET_DIRTY_BITMAP into a fresh zeroed user buffer. */
export function unmapWithBits(rig: Rig, iova: number, size: number): { ret: number; size: bigint; bits: number[]; bytes: Uint8Array } {
  const nbytes = Math.ceil(size / P / 64) * 8;
  const buf = userBuffer(rig.user, nbytes);
  const r = rig.container.unmapDma({ iova, size, bitmap: { size: nbytes, data: buf.data } });
  return { ret: r.ret, size: r.size, bits: bitsOf(buf.view), bytes: buf.view };
}

/** [start, start+n) as an array. */
export function range(start: number, n: number): number[] {
  return Array.from({ length: n }, (_, i) => start + i);
}
