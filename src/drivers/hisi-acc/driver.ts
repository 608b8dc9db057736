/**
 * hisi-acc-vfio-pci: the vendor VFIO driver of the HiSilicon ACC VFs, a variant of
 * vfio-pci-core (hisi-acc-vfio-pci.md sections 1-8).
 *
 * Binding: the id table lists the three VF ids of vendor 0x19e5 only, each override-only
 * (Linux's PCI_DRIVER_OVERRIDE_DEVICE_VFIO): like every vfio variant driver it binds to a
 * device whose driver_override names it, never by plain id matching, so loading the module
 * does not snatch VFs from other drivers. No sriov_configure: VFs only.
 *
 * At probe the driver picks its ops by the PF's QM generation, as the Linux probe does: a
 * V3+ part gets the migration ops (BAR2 guard, v2 migration or the v1 region, DMA logging);
 * an older part gets plain vfio-pci behaviour. Open then checks the PF QM state:
 * EINVAL "HiSi ACC qm driver not loaded" without it; on an old part ENODEV "Migration not
 * supported, hw version" with the RFC policy, plain pass-through with the merged one. The
 * core undoes its enable when open fails.
 */
import type { HostPciDriver } from '../../host/driver.js';
import type { HostPciDevice } from '../../host/pci-device.js';
import type { PciDeviceId } from '../../host/pci-ids.js';
import { fail } from '../../uapi/errno.js';
import { ACC_VF_DATA_SIZE } from './acc-vf-data.js';
import { createVfioPciDriver, type VfioPciHostDriver } from '../../vfio/pci-core/driver.js';
import type { VfioPciCoreDevice } from '../../vfio/pci-core/core-device.js';
import type { VfioPciVariantOps } from '../../vfio/pci-core/ops.js';
import { VFIO_PCI_OFFSET_TO_INDEX } from '../../uapi/vfio.js';
import { guardIoctl, guardMmap, guardRegionInfo, guardRw, type Bar2View } from './bar2-guard.js';
import {
  HISI_ACC_MIG_FLAGS, HisiAccVfDevice, type HisiAccDriverOptions, type ResolvedOptions, requirePfQm,
  resolveOptions,
} from './device.js';
import { DirtyLogger, dirtyLogOps } from './dirty-log.js';
import {
  PCI_DEVICE_ID_HUAWEI_HPRE_VF, PCI_DEVICE_ID_HUAWEI_SEC_VF, PCI_DEVICE_ID_HUAWEI_ZIP_VF,
  PCI_VENDOR_ID_HUAWEI, QM_HW_V3,
} from './regs.js';
import { V1MigrationRegion } from './v1-region.js';

export const HISI_ACC_VFIO_PCI = 'hisi-acc-vfio-pci';

/** SEC, HPRE and ZIP VFs, override-only. */
export const HISI_ACC_VFIO_PCI_IDS: readonly PciDeviceId[] = [
  { vendor: PCI_VENDOR_ID_HUAWEI, device: PCI_DEVICE_ID_HUAWEI_SEC_VF, overrideOnly: true },
  { vendor: PCI_VENDOR_ID_HUAWEI, device: PCI_DEVICE_ID_HUAWEI_HPRE_VF, overrideOnly: true },
  { vendor: PCI_VENDOR_ID_HUAWEI, device: PCI_DEVICE_ID_HUAWEI_ZIP_VF, overrideOnly: true },
];

/** Per-device driver state of a migration-capable VF. */
export interface HisiAccState {
  readonly dev: HisiAccVfDevice;
  readonly logger: DirtyLogger;
  region: V1MigrationRegion | null;
  regionIndex: number;
}

/** Every migration-capable core device of every instance of the driver (debug view lookup). */
const registry = new WeakMap<VfioPciCoreDevice, HisiAccState>();

/** The driver state of a core device bound with migration ops, if any. */
export function hisiAccStateOf(core: VfioPciCoreDevice): HisiAccState | undefined {
  return registry.get(core);
}

export interface HisiAccVfioPciDriver extends HostPciDriver {
  readonly options: Readonly<ResolvedOptions>;
  /** The vfio core device of a bound VF. */
  coreOf(dev: HostPciDevice): VfioPciCoreDevice | undefined;
  /** The migration state of a bound VF (undefined for a pass-through binding). */
  deviceOf(dev: HostPciDevice): HisiAccVfDevice | undefined;
}

function attachState(core: VfioPciCoreDevice, opts: ResolvedOptions): HisiAccState {
  let st = registry.get(core);
  if (!st) {
    st = { dev: new HisiAccVfDevice(core, opts), logger: new DirtyLogger(), region: null, regionIndex: -1 };
    registry.set(core, st);
  }
  return st;
}

function stateOf(core: VfioPciCoreDevice): HisiAccState {
  return registry.get(core) ?? fail('ENODEV', `${core.name} has no hisi-acc state`);
}

function migrationVariant(opts: ResolvedOptions): VfioPciVariantOps {
  const view = (core: VfioPciCoreDevice): Bar2View => {
    const d = stateOf(core).dev;
    return { hide: d.hideUpperHalf, end: d.bar2Visible, hostPageSize: opts.hostPageSize };
  };
  const zeroCountCheck = (core: VfioPciCoreDevice, buf: Uint8Array, pos: number): void => {
    const st = registry.get(core);
    if (st?.region && buf.length === 0 && Number.isSafeInteger(pos) && pos >= 0 && VFIO_PCI_OFFSET_TO_INDEX(pos) === st.regionIndex) {
      fail('EINVAL', 'zero-length access to the migration region');
    }
  };
  return {
    name: HISI_ACC_VFIO_PCI,
    open(core) {
      const st = attachState(core, opts);
      st.dev.open();
      if (opts.protocol === 'v1') {
        try {
          const region = new V1MigrationRegion(st.dev);
          st.regionIndex = core.registerRegion(region);
          st.region = region;
        } catch (e) {
          st.dev.close();
          throw e;
        }
      }
    },
    close(core) {
      const st = registry.get(core);
      if (!st) return;
      st.logger.stop();
      st.dev.close();
      st.region = null;
      st.regionIndex = -1;
    },
    reset(core) {
      registry.get(core)?.dev.onReset();
    },
    regionInfo: (core, index, next) => guardRegionInfo(view(core), index, next),
    read(core, buf, pos, next) {
      zeroCountCheck(core, buf, pos);
      return guardRw(view(core), buf, pos, next);
    },
    write(core, buf, pos, next) {
      zeroCountCheck(core, buf, pos);
      return guardRw(view(core), buf, pos, next);
    },
    mmap: (core, index, offset, length, next) => guardMmap(view(core), index, offset, length, next),
    ioctl: (core, request, arg, next) => guardIoctl(view(core), request, arg, next),
    migration: opts.protocol === 'v2'
      ? {
        flags: HISI_ACC_MIG_FLAGS,
        setState: (core, target) => stateOf(core).dev.setState(target),
        getState: (core) => stateOf(core).dev.migState,
        getDataSize: () => ACC_VF_DATA_SIZE,
      }
      : undefined,
    log: dirtyLogOps((core) => stateOf(core).logger),
  };
}

function passthroughVariant(opts: ResolvedOptions): VfioPciVariantOps {
  return {
    name: HISI_ACC_VFIO_PCI,
    open(core) {
      const { pf } = requirePfQm(core);
      if (pf.ver < QM_HW_V3 && opts.oldHwPolicy === 'rfc') fail('ENODEV', 'Migration not supported, hw version');
    },
  };
}

/** Whether the VF's PF is a V3+ QM (PCI revision of the PF: 0x30 V3, 0x50 V4). */
function migrationCapable(dev: HostPciDevice): boolean {
  const pf = dev.physfn;
  return dev.isVirtfn && pf !== undefined && pf.revision >= QM_HW_V3;
}

export function createHisiAccVfioPciDriver(options: HisiAccDriverOptions = {}): HisiAccVfioPciDriver {
  const opts = Object.freeze(resolveOptions(options));
  const withMig: VfioPciHostDriver = createVfioPciDriver(HISI_ACC_VFIO_PCI, [...HISI_ACC_VFIO_PCI_IDS], migrationVariant(opts));
  const plain: VfioPciHostDriver = createVfioPciDriver(HISI_ACC_VFIO_PCI, [...HISI_ACC_VFIO_PCI_IDS], passthroughVariant(opts));
  const boundWith = new Map<HostPciDevice, VfioPciHostDriver>();
  return {
    name: HISI_ACC_VFIO_PCI,
    idTable: HISI_ACC_VFIO_PCI_IDS,
    options: opts,
    probe(dev) {
      const inner = migrationCapable(dev) ? withMig : plain;
      inner.probe(dev);
      boundWith.set(dev, inner);
      const core = inner.coreOf(dev);
      if (inner === withMig && core) attachState(core, opts);
    },
    remove(dev) {
      const inner = boundWith.get(dev);
      if (!inner) return;
      boundWith.delete(dev);
      inner.remove(dev);
    },
    coreOf(dev) {
      return boundWith.get(dev)?.coreOf(dev);
    },
    deviceOf(dev) {
      const core = boundWith.get(dev)?.coreOf(dev);
      return core ? registry.get(core)?.dev : undefined;
    },
  };
}
