/**
 * The host's PCI bus and driver core: which functions exist, which driver owns each, and
 * the rules that decide binding (drivers/base/dd.c, bus.c and drivers/pci/pci-driver.c,
 * iov.c as of Linux 6.1).
 *
 * Devices: PFs are added with `addDevice`; VFs appear when their PF's SR-IOV VF Enable goes
 * to 1 and disappear when it goes to 0 (or the PF is reset), through the PciPf hooks, so a
 * raw config write by anyone has the same effect as the PF driver's `enableSriov`.
 *
 * Binding:
 * - automatic probing (`drivers_autoprobe`, on by default) tries drivers in registration
 *   order when a device or a driver appears; a probe error lets the next driver try;
 * - a VF probes only if its PF's `sriov_drivers_autoprobe` is set or it has a
 *   driver_override (`pci_device_can_probe`), for explicit binds as well;
 * - explicit `bind`: ENODEV for an unknown device or a driver that does not match, EBUSY if
 *   the device already has a driver, otherwise the probe's own errno;
 * - `unbindFrom(bdf, driver)`: ENODEV unless the device is bound to that driver.
 *
 * Methods throw KernelError; the sysfs layer turns them into -errno.
 */
import type { DmaPort } from '../hw/dma.js';
import type { PciFunction } from '../hw/pci/function.js';
import { PciPf } from '../hw/pci/pf.js';
import { PciVf } from '../hw/pci/vf.js';
import {
  PCI_SRIOV_CTRL, PCI_SRIOV_CTRL_MSE, PCI_SRIOV_CTRL_VFE, PCI_SRIOV_NUM_VF,
} from '../hw/pci/regs.js';
import type { Scheduler } from '../sim/scheduler.js';
import { Errno, KernelError, fail } from '../uapi/errno.js';
import type { HostPciDriver } from './driver.js';
import type { IommuGroups } from './iommu-groups.js';
import { KernelLog } from './kernel-log.js';
import { cString, kstrtou16, sscanfHex, sysfsStreq } from './kstr.js';
import { type PciDeviceId, PCI_ANY_ID, driverMatches } from './pci-ids.js';
import { HostPciDevice } from './pci-device.js';
import type { HostVfio, VfioProcess } from './vfio-registry.js';

/** Linux's limit for a stored driver_override (PAGE_SIZE - 1, minus the newline of show). */
const OVERRIDE_MAX = 4096 - 1;

/** Observers of bus changes (the sysfs view). */
export interface BusListener {
  deviceAdded?(dev: HostPciDevice): void;
  deviceRemoved?(dev: HostPciDevice): void;
  driverAdded?(drv: HostPciDriver): void;
  driverRemoved?(drv: HostPciDriver): void;
  bound?(dev: HostPciDevice, drv: HostPciDriver): void;
  unbound?(dev: HostPciDevice, drv: HostPciDriver): void;
}

interface DriverEntry {
  drv: HostPciDriver;
  dynIds: PciDeviceId[];
}

/** The host a bus belongs to, as drivers shared between hosts find it (vfio-pci). */
export interface HostLink {
  readonly vfio: HostVfio;
  readonly process: VfioProcess;
}

export interface HostPciBusOptions {
  scheduler: Scheduler;
  host?: HostLink;
  groups: IommuGroups;
  /** The host's default DMA path of a requester (its identity-domain port). */
  defaultDma(bdf: string): DmaPort;
}

export class HostPciBus {
  readonly scheduler: Scheduler;
  readonly host: HostLink | undefined;
  readonly log = new KernelLog();
  /** /sys/bus/pci/drivers_autoprobe. */
  driversAutoprobe = true;
  private readonly groups: IommuGroups;
  private readonly defaultDma: (bdf: string) => DmaPort;
  private readonly devs = new Map<string, HostPciDevice>();
  private readonly drvs = new Map<string, DriverEntry>();
  private readonly listeners: BusListener[] = [];
  private readonly unhook = new Map<HostPciDevice, (() => void)[]>();

  constructor(opts: HostPciBusOptions) {
    this.scheduler = opts.scheduler;
    this.host = opts.host;
    this.groups = opts.groups;
    this.defaultDma = opts.defaultDma;
  }

  addListener(l: BusListener): void {
    this.listeners.push(l);
  }

  private emit<K extends keyof BusListener>(ev: K, ...args: Parameters<NonNullable<BusListener[K]>>): void {
    for (const l of this.listeners) (l[ev] as ((...a: unknown[]) => void) | undefined)?.(...args);
  }

  // ---- devices ---------------------------------------------------------------------------

  /** Enumerates a function (a PF; VFs come from SR-IOV). EEXIST for a taken address. */
  addDevice(fn: PciFunction): HostPciDevice {
    if (fn instanceof PciVf) fail('EINVAL', `${fn.bdf}: VFs are created through their PF's SR-IOV capability`);
    if (this.devs.has(fn.bdf)) fail('EEXIST', `${fn.bdf} already on the bus`);
    const dev = this.insert(fn, undefined);
    if (fn instanceof PciPf) {
      this.unhook.set(dev, [
        fn.onVfEnable((vfs) => this.vfsCreated(dev, vfs)),
        fn.onVfDisable((vfs) => this.vfsDestroyed(vfs)),
      ]);
      if (fn.vfs.length > 0) this.vfsCreated(dev, fn.vfs);
    }
    if (this.driversAutoprobe) this.attach(dev);
    return dev;
  }

  /** Hot-removes a PF (its driver is unbound; VFs left enabled are removed first). */
  removeDevice(bdf: string): void {
    const dev = this.devs.get(bdf);
    if (!dev) fail('ENODEV', `no device ${bdf}`);
    if (dev.isVirtfn) fail('EINVAL', `${bdf} is a VF: disable SR-IOV on its PF instead`);
    this.release(dev);
    if (dev.numVfs > 0) {
      this.log.print(dev.bdf, 'driver left SR-IOV enabled after remove');
      this.disableSriov(dev);
    }
    for (const off of this.unhook.get(dev) ?? []) off();
    this.unhook.delete(dev);
    this.drop(dev);
  }

  device(bdf: string): HostPciDevice | undefined {
    return this.devs.get(bdf);
  }

  /** `bus_find_device_by_name`: the name compared with sysfs_streq. */
  findByName(name: string): HostPciDevice | undefined {
    const exact = this.devs.get(name);
    if (exact) return exact;
    for (const d of this.devs.values()) if (sysfsStreq(d.bdf, name)) return d;
    return undefined;
  }

  /** Every present device in enumeration order. */
  devices(): HostPciDevice[] {
    return [...this.devs.values()];
  }

  /** The VF devices of a PF, VF 1 first. */
  vfsOf(pf: HostPciDevice): HostPciDevice[] {
    return this.devices().filter((d) => d.physfn === pf).sort((a, b) => a.vfIndex! - b.vfIndex!);
  }

  private insert(fn: PciFunction, physfn: HostPciDevice | undefined): HostPciDevice {
    const group = this.groups.allocate(fn.bdf);
    const dev = new HostPciDevice(fn, { bus: this, iommuGroup: group, defaultDma: this.defaultDma(fn.bdf), physfn });
    this.devs.set(dev.bdf, dev);
    this.emit('deviceAdded', dev);
    return dev;
  }

  private drop(dev: HostPciDevice): void {
    this.devs.delete(dev.bdf);
    dev.markRemoved();
    this.groups.release(dev.iommuGroup);
    this.emit('deviceRemoved', dev);
  }

  private vfsCreated(pf: HostPciDevice, vfs: readonly PciVf[]): void {
    const added: HostPciDevice[] = [];
    for (const vf of vfs) {
      if (this.devs.has(vf.bdf)) {
        this.log.print(vf.bdf, 'address already in use, VF not added');
        continue;
      }
      added.push(this.insert(vf, pf));
    }
    if (!this.driversAutoprobe) return;
    for (const d of added) if (d.present && !d.driver) this.attach(d);
  }

  private vfsDestroyed(vfs: readonly PciVf[]): void {
    for (let i = vfs.length - 1; i >= 0; i--) {
      const d = this.devs.get(vfs[i]!.bdf);
      if (d && d.fn === vfs[i]) this.removeVf(d);
    }
  }

  private removeVf(dev: HostPciDevice): void {
    this.release(dev);
    this.drop(dev);
  }

  // ---- SR-IOV (pci_enable_sriov / pci_disable_sriov / sriov_numvfs) -----------------------

  /**
   * `pci_enable_sriov`: NumVFs, then VF Enable + VF MSE in one write; the VFs appear (and
   * probe, subject to autoprobe) during that write. n = 0 does nothing. ENOSYS for a
   * function without SR-IOV, EINVAL if VFs exist or n > TotalVFs, ENOMEM if the VFs would
   * not fit the bus number range.
   */
  enableSriov(dev: HostPciDevice, n: number): void {
    const pf = dev.pf;
    if (!pf) fail('ENOSYS', `${dev.bdf} has no SR-IOV capability`);
    if (!Number.isInteger(n) || n < 0) fail('EINVAL', `bad VF count ${n}`);
    if (n === 0) return;
    if (pf.vfs.length > 0 || pf.sriov.vfEnabled) fail('EINVAL', `${dev.bdf}: SR-IOV already enabled`);
    if (n > pf.sriov.totalVfs) fail('EINVAL', `${n} VFs exceed TotalVFs ${pf.sriov.totalVfs}`);
    const off = pf.sriov.offset;
    pf.configWrite(off + PCI_SRIOV_NUM_VF, 2, n);
    const ctrl = pf.configRead(off + PCI_SRIOV_CTRL, 2);
    pf.configWrite(off + PCI_SRIOV_CTRL, 2, ctrl | PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE);
    if (!pf.sriov.vfEnabled) {
      pf.configWrite(off + PCI_SRIOV_NUM_VF, 2, 0);
      fail('ENOMEM', `${dev.bdf}: ${n} VFs do not fit the bus range`);
    }
    this.log.print(dev.bdf, `enabled ${n} VFs`);
  }

  /** `pci_disable_sriov`: VF devices are removed (drivers unbound) before VF Enable clears. */
  disableSriov(dev: HostPciDevice): void {
    const pf = dev.pf;
    if (!pf || !pf.sriov.vfEnabled) return;
    const vfs = this.vfsOf(dev);
    for (let i = vfs.length - 1; i >= 0; i--) this.removeVf(vfs[i]!);
    const off = pf.sriov.offset;
    const ctrl = pf.configRead(off + PCI_SRIOV_CTRL, 2);
    pf.configWrite(off + PCI_SRIOV_CTRL, 2, ctrl & ~(PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE));
    pf.configWrite(off + PCI_SRIOV_NUM_VF, 2, 0);
    this.log.print(dev.bdf, 'SR-IOV disabled');
  }

  /**
   * The sriov_numvfs store, check for check as `sriov_numvfs_store`: unparsable -> EINVAL;
   * above TotalVFs -> ERANGE; equal to the current count -> success, nothing done; no driver
   * or a driver without sriov_configure -> ENOENT; 0 -> the driver disables; VFs already on
   * -> EBUSY; otherwise the driver's result (a negative one is the errno).
   */
  sriovNumvfsStore(dev: HostPciDevice, text: string): void {
    const pf = dev.pf;
    if (!pf) fail('ENOENT', `${dev.bdf} has no sriov_numvfs`);
    const n = kstrtou16(text, 0);
    if (n < 0) fail('EINVAL', `sriov_numvfs: cannot parse "${text}"`);
    if (n > pf.sriov.totalVfs) fail('ERANGE', `${n} VFs requested, TotalVFs is ${pf.sriov.totalVfs}`);
    const current = pf.vfs.length;
    if (n === current) return;
    const drv = dev.driver;
    if (!drv) {
      this.log.print(dev.bdf, 'no driver bound to device; cannot configure SR-IOV');
      fail('ENOENT');
    }
    if (!drv.sriovConfigure) {
      this.log.print(dev.bdf, 'driver does not support SR-IOV configuration via sysfs');
      fail('ENOENT');
    }
    if (n !== 0 && current !== 0) {
      this.log.print(dev.bdf, `${current} VFs already enabled. Disable before enabling ${n} VFs`);
      fail('EBUSY');
    }
    const r = drv.sriovConfigure(dev, n);
    if (r < 0) throw new KernelError(-r, `${drv.name}: sriov_configure(${n}) failed`);
    if (n !== 0 && r !== n) this.log.print(dev.bdf, `${n} VFs requested; only ${r} enabled`);
  }

  // ---- drivers ---------------------------------------------------------------------------

  /** `pci_register_driver`: EBUSY if the name is taken; probes unbound matching devices. */
  registerDriver(drv: HostPciDriver): void {
    if (typeof drv.name !== 'string' || drv.name === '' || drv.name.includes('/')) {
      fail('EINVAL', `bad driver name "${String(drv.name)}"`);
    }
    if (this.drvs.has(drv.name)) fail('EBUSY', `driver ${drv.name} is already registered`);
    const entry: DriverEntry = { drv, dynIds: [] };
    this.drvs.set(drv.name, entry);
    this.emit('driverAdded', drv);
    if (this.driversAutoprobe) this.driverAttach(entry);
  }

  /** `pci_unregister_driver`: every device it owns is unbound first. */
  unregisterDriver(name: string): void {
    const entry = this.drvs.get(name);
    if (!entry) fail('ENODEV', `no driver ${name}`);
    for (const d of this.devices()) if (d.driver === entry.drv) this.release(d);
    this.drvs.delete(name);
    this.emit('driverRemoved', entry.drv);
  }

  driver(name: string): HostPciDriver | undefined {
    return this.drvs.get(name)?.drv;
  }

  drivers(): HostPciDriver[] {
    return [...this.drvs.values()].map((e) => e.drv);
  }

  /** Dynamic ids of a driver (new_id), in the order added. */
  dynIds(name: string): readonly PciDeviceId[] {
    return this.drvs.get(name)?.dynIds ?? [];
  }

  /** `driver_match_device` for a registered driver. */
  matches(dev: HostPciDevice, name: string): boolean {
    const e = this.drvs.get(name);
    return e !== undefined && driverMatches(e.drv.name, e.dynIds, e.drv.idTable, dev);
  }

  private driverAttach(entry: DriverEntry): void {
    for (const d of this.devices()) {
      if (d.driver || !driverMatches(entry.drv.name, entry.dynIds, entry.drv.idTable, d)) continue;
      this.tryProbe(d, entry);
    }
  }

  /** `device_attach`: the first matching driver whose probe succeeds; true if bound. */
  attach(dev: HostPciDevice): boolean {
    if (dev.driver) return true;
    for (const e of this.drvs.values()) {
      if (!dev.present || dev.driver) break;
      if (!driverMatches(e.drv.name, e.dynIds, e.drv.idTable, dev)) continue;
      if (this.tryProbe(dev, e)) return true;
    }
    return dev.driver !== undefined;
  }

  private tryProbe(dev: HostPciDevice, e: DriverEntry): boolean {
    try {
      this.probe(dev, e);
      return true;
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      return false;
    }
  }

  /** `__driver_probe_device` + `really_probe` + `pci_device_probe`. */
  private probe(dev: HostPciDevice, e: DriverEntry): void {
    if (!dev.present) fail('ENODEV', `${dev.bdf} is gone`);
    if (dev.driver) fail('EBUSY', `${dev.bdf} already bound to ${dev.driver.name}`);
    if (dev.isVirtfn && !dev.physfn!.sriovDriversAutoprobe && dev.driverOverride === undefined) {
      fail('ENODEV', `${dev.bdf}: VF probing disabled by sriov_drivers_autoprobe`);
    }
    dev.setDriver(e.drv);
    try {
      e.drv.probe(dev);
    } catch (err) {
      this.cleanupUnbound(dev);
      if (err instanceof KernelError) {
        this.log.print(dev.bdf, `probe with driver ${e.drv.name} failed with error ${-err.errno}`);
      }
      throw err;
    }
    this.emit('bound', dev, e.drv);
  }

  /** `device_release_driver`: runs the driver's remove; a no-op for an unbound device. */
  release(dev: HostPciDevice): void {
    const drv = dev.driver;
    if (!drv) return;
    try {
      drv.remove(dev);
    } catch (err) {
      if (!(err instanceof KernelError)) throw err;
      this.log.print(dev.bdf, `${drv.name}: remove failed: ${err.message}`);
    }
    this.cleanupUnbound(dev);
    this.emit('unbound', dev, drv);
  }

  private cleanupUnbound(dev: HostPciDevice): void {
    dev.setDriver(undefined);
    dev.drvdata = undefined;
    dev.dropIrqState();
    if (dev.present) dev.restoreHostRouting();
  }

  /** The bind file of driver `name`. */
  bind(bdf: string, name: string): void {
    const e = this.drvs.get(name);
    if (!e) fail('ENODEV', `no driver ${name}`);
    const dev = this.findByName(bdf);
    if (!dev || !driverMatches(e.drv.name, e.dynIds, e.drv.idTable, dev)) {
      fail('ENODEV', `${bdf.trimEnd()} does not match driver ${name}`);
    }
    this.probe(dev, e);
  }

  /** The unbind file of driver `name`: ENODEV unless the device is bound to it. */
  unbindFrom(bdf: string, name: string): void {
    const e = this.drvs.get(name);
    const dev = this.findByName(bdf);
    if (!e || !dev || dev.driver !== e.drv) fail('ENODEV', `${bdf.trimEnd()} is not bound to ${name}`);
    this.release(dev);
  }

  /** Unbinds whatever driver owns the device (ENODEV for an unknown device). */
  unbind(bdf: string): void {
    const dev = this.findByName(bdf);
    if (!dev) fail('ENODEV', `no device ${bdf}`);
    this.release(dev);
  }

  /** /sys/bus/pci/drivers_probe: ENODEV for an unknown device; otherwise probe if unbound. */
  driversProbe(bdf: string): void {
    const dev = this.findByName(bdf);
    if (!dev) fail('ENODEV', `no device ${bdf.trimEnd()}`);
    if (!dev.driver) this.attach(dev);
  }

  /** Sets (or with undefined clears) a device's driver_override; binding is unchanged. */
  setDriverOverride(dev: HostPciDevice, name: string | undefined): void {
    dev.setOverride(name === '' ? undefined : name);
  }

  /**
   * The driver_override store (`driver_set_override`): EINVAL for PAGE_SIZE-1 bytes or
   * more; the string ends at a NUL or the first newline; empty or "\n" clears.
   */
  driverOverrideStore(dev: HostPciDevice, text: string): void {
    if (text.length >= OVERRIDE_MAX) fail('EINVAL', 'driver_override too long');
    const s = cString(text);
    const nl = s.indexOf('\n');
    this.setDriverOverride(dev, nl < 0 ? s : s.slice(0, nl));
  }

  /**
   * The new_id store: "vendor device [subvendor subdevice class class_mask driver_data]" in
   * hex. EINVAL with fewer than two fields or a driver_data no static entry carries (every
   * entry here has driver_data 0); EEXIST if the driver already matches such a device
   * (checked unless all seven fields are given). Unbound devices are then probed.
   */
  newIdStore(name: string, text: string): void {
    const e = this.drvs.get(name);
    if (!e) fail('ENODEV', `no driver ${name}`);
    const f = sscanfHex(text, 7);
    if (f.length < 2) fail('EINVAL', 'new_id needs at least vendor and device');
    const id: PciDeviceId = {
      vendor: f[0]!, device: f[1]!, subvendor: f[2] ?? PCI_ANY_ID, subdevice: f[3] ?? PCI_ANY_ID,
      class: f[4] ?? 0, classMask: f[5] ?? 0,
    };
    const driverData = f[6] ?? 0;
    if (f.length !== 7) {
      const probeDev = {
        vendor: id.vendor, device: id.device, subsystemVendor: id.subvendor! & 0xffff,
        subsystemDevice: id.subdevice! & 0xffff, classCode: id.class!, driverOverride: undefined,
      };
      if (driverMatches(e.drv.name, e.dynIds, e.drv.idTable, probeDev)) fail('EEXIST', 'id already handled');
    }
    if (e.drv.idTable.length > 0 && driverData !== 0) fail('EINVAL', `driver_data ${driverData} matches no id`);
    e.dynIds.push(id);
    this.driverAttach(e);
  }

  /** The remove_id store: ENODEV when no dynamic id matches, EINVAL with < 2 fields. */
  removeIdStore(name: string, text: string): void {
    const e = this.drvs.get(name);
    if (!e) fail('ENODEV', `no driver ${name}`);
    const f = sscanfHex(text, 6);
    if (f.length < 2) fail('EINVAL', 'remove_id needs at least vendor and device');
    const [vendor, device] = f as [number, number];
    const subvendor = f[2] ?? PCI_ANY_ID;
    const subdevice = f[3] ?? PCI_ANY_ID;
    const cls = f[4] ?? 0;
    const mask = f[5] ?? 0;
    const i = e.dynIds.findIndex((id) => id.vendor >>> 0 === vendor
      && id.device >>> 0 === device
      && (subvendor === PCI_ANY_ID || (id.subvendor ?? PCI_ANY_ID) >>> 0 === subvendor)
      && (subdevice === PCI_ANY_ID || (id.subdevice ?? PCI_ANY_ID) >>> 0 === subdevice)
      && (((id.class ?? 0) ^ cls) & mask) === 0);
    if (i < 0) throw new KernelError(Errno.ENODEV, 'no such dynamic id');
    e.dynIds.splice(i, 1);
  }
}
