/**
 * PCI driver id tables and the matching rule of `pci_match_device()`:
 *
 * 1. A device with driver_override set matches only the driver of that name.
 * 2. Dynamic ids (added through new_id) are tried before the static table.
 * 3. A static entry flagged `overrideOnly` matches only when driver_override is set (how
 *    vfio-pci's catch-all entry works).
 * 4. With driver_override naming the driver, the driver matches even when no id does.
 *
 * An id field of PCI_ANY_ID matches anything; class matching uses `(id.class ^ dev.class) &
 * id.classMask`, so classMask 0 accepts every class.
 */

/** `PCI_ANY_ID` (~0 as a u32). */
export const PCI_ANY_ID = 0xffffffff;

export interface PciDeviceId {
  vendor: number;
  device: number;
  /** PCI_ANY_ID when absent. */
  subvendor?: number;
  /** PCI_ANY_ID when absent. */
  subdevice?: number;
  /** 24-bit class code compared under classMask (0 when absent). */
  class?: number;
  classMask?: number;
  /** Match only devices whose driver_override names this driver. */
  overrideOnly?: boolean;
}

/** The identity fields of a device a match looks at. */
export interface PciMatchTarget {
  readonly vendor: number;
  readonly device: number;
  readonly subsystemVendor: number;
  readonly subsystemDevice: number;
  readonly classCode: number;
  readonly driverOverride: string | undefined;
}

function fieldMatches(want: number | undefined, have: number): boolean {
  return want === undefined || want >>> 0 === PCI_ANY_ID || want >>> 0 === have >>> 0;
}

/** `pci_match_one_device`. */
export function idMatches(id: PciDeviceId, dev: PciMatchTarget): boolean {
  return fieldMatches(id.vendor, dev.vendor)
    && fieldMatches(id.device, dev.device)
    && fieldMatches(id.subvendor, dev.subsystemVendor)
    && fieldMatches(id.subdevice, dev.subsystemDevice)
    && (((id.class ?? 0) ^ dev.classCode) & (id.classMask ?? 0)) === 0;
}

/** `pci_match_device`: whether a driver (its name, dynamic ids, static ids) matches. */
export function driverMatches(
  name: string,
  dynIds: readonly PciDeviceId[],
  idTable: readonly PciDeviceId[],
  dev: PciMatchTarget,
): boolean {
  if (dev.driverOverride !== undefined && dev.driverOverride !== name) return false;
  for (const id of dynIds) if (idMatches(id, dev)) return true;
  for (const id of idTable) {
    if (!idMatches(id, dev)) continue;
    if (!id.overrideOnly || dev.driverOverride !== undefined) return true;
  }
  return dev.driverOverride !== undefined;
}
