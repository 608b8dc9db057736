/**
 * vfio-pci as a host PCI driver, and the factory variant drivers use (Linux vfio_pci_probe /
 * vfio_pci_core_register_device, and a variant's module with its own id table).
 *
 * probe() wraps the function in a VfioPciCoreDevice and registers it with the host's VFIO
 * registry as a member of its IOMMU group; remove() unregisters it. Linux's remove waits for
 * the user to close the device (nagging it through the REQ interrupt); here it signals REQ
 * once and then closes every open fd and mapping itself.
 *
 * The driver finds its host through `opts.host` or, for a driver shared by several hosts
 * (the exported `vfioPciDriver`), through the device's `host` link.
 */
import { fail } from '../../uapi/errno.js';
import { PCI_HEADER_TYPE, PCI_HEADER_TYPE_NORMAL } from '../../hw/pci/regs.js';
import { VfioPciCoreDevice } from './core-device.js';
import type { HostPciDeviceLike, HostPciDriverLike, PciIdMatch, VfioHostLink } from './host-types.js';
import type { VfioPciVariantOps } from './ops.js';

export interface VfioPciDriverOptions {
  host?: VfioHostLink;
}

export interface VfioPciHostDriver extends HostPciDriverLike {
  readonly variant: VfioPciVariantOps | null;
  /** The core device of a device this driver is bound to. */
  coreOf(dev: HostPciDeviceLike): VfioPciCoreDevice | undefined;
}

export function createVfioPciDriver(
  name: string,
  idTable: PciIdMatch[],
  variant?: VfioPciVariantOps,
  opts: VfioPciDriverOptions = {},
): VfioPciHostDriver {
  const bound = new Map<HostPciDeviceLike, { core: VfioPciCoreDevice; host: VfioHostLink }>();
  const driver: VfioPciHostDriver = {
    name,
    idTable,
    variant: variant ?? null,
    probe(dev: HostPciDeviceLike): void {
      const host = opts.host ?? dev.host;
      if (!host) fail('ENODEV', `${name}: no VFIO host for ${dev.bdf}`);
      if ((dev.fn.configRead(PCI_HEADER_TYPE, 1) & 0x7f) !== PCI_HEADER_TYPE_NORMAL) fail('EINVAL', `${dev.bdf} is not a type 0 function`);
      if (bound.has(dev)) fail('EBUSY', `${dev.bdf} already bound`);
      const core = new VfioPciCoreDevice({ fn: dev.fn, process: host.process, variant, hostDev: dev, name: dev.bdf });
      try {
        host.vfio.registerDevice(dev, core);
      } catch (e) {
        core.shutdown();
        throw e;
      }
      bound.set(dev, { core, host });
      dev.drvdata = core;
    },
    remove(dev: HostPciDeviceLike): void {
      const b = bound.get(dev);
      if (!b) return;
      bound.delete(dev);
      b.core.shutdown();
      b.host.vfio.unregisterDevice(dev);
      if (dev.drvdata === b.core) dev.drvdata = undefined;
    },
    coreOf(dev: HostPciDeviceLike): VfioPciCoreDevice | undefined {
      return bound.get(dev)?.core;
    },
  };
  return driver;
}

/**
 * Plain vfio-pci. Its id table is empty: like Linux without ids= or new_id, it binds only to a
 * device whose driver_override names it.
 */
export const vfioPciDriver: VfioPciHostDriver = createVfioPciDriver('vfio-pci', []);
