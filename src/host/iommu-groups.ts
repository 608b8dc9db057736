/**
 * IOMMU group numbering. Every function (PF or VF) of these integrated endpoints is isolated
 * by the SMMU (ACS-equivalent, no peer-to-peer), so each sits alone in its group. Numbers
 * come from an ida-like allocator: the lowest free number, reused after a VF is removed,
 * exactly as /sys/kernel/iommu_groups numbering behaves when VFs are re-created.
 */
import { fail } from '../uapi/errno.js';

export class IommuGroups {
  private readonly owner: (string | undefined)[] = [];

  /** Allocates the lowest free group number for the device `bdf`. */
  allocate(bdf: string): number {
    let id = this.owner.indexOf(undefined);
    if (id < 0) id = this.owner.length;
    this.owner[id] = bdf;
    return id;
  }

  /** Frees a group number (the device left the bus). */
  release(id: number): void {
    if (this.owner[id] === undefined) fail('ENOENT', `IOMMU group ${id} is not allocated`);
    this.owner[id] = undefined;
    while (this.owner.length > 0 && this.owner[this.owner.length - 1] === undefined) this.owner.pop();
  }

  /** The device in group `id`, if any. */
  deviceOf(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.owner[id] : undefined;
  }

  /** Allocated group numbers in ascending order. */
  ids(): number[] {
    const out: number[] = [];
    this.owner.forEach((o, i) => {
      if (o !== undefined) out.push(i);
    });
    return out;
  }
}
