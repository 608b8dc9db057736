/**
 * A VFIO group (/dev/vfio/<id>): the devices of one IOMMU group that are bound to vfio
 * drivers, and the file user space opens to put them in a container and get device fds.
 *
 * Construction (what the host does per IOMMU group, when the first vfio device registers):
 *
 *   const group = new VfioGroup({ id: 7, fds: process.fds, iommuBacked: true });
 *   group.addMember(member);          // VfioGroupMember, e.g. a vfio-pci-core device
 *   const fd = process.fds.install(group.open());   // or group.openFd()
 *
 * `iommuBacked` groups sit behind the SMMU: attaching them to a type1 container calls
 * member.setIommu(domain) so device DMA flows through the container's IommuDomain, and
 * detaching calls setIommu(null). Emulated (mdev-like) groups never get a domain; their
 * drivers use pinPages/dmaRw. IOMMU-backed groups carry the SMMUv3 software MSI window as a
 * reserved region unless `reservedRegions` says otherwise.
 *
 * The object is also its open file. Only one open at a time (EBUSY), as in Linux. Closing the
 * fd detaches the group from its container, unless device fds are still open: they keep the
 * group file referenced, so the detach happens when the last of them closes and a new open
 * is EBUSY until then. When the last member is removed the group is dead: GET_STATUS and
 * SET_CONTAINER give ENODEV (the host then creates a fresh group for the next device).
 *
 * Ioctls (Linux 6.1 order of checks):
 * - GET_STATUS: struct copy EFAULT, argsz < 8 EINVAL, no devices ENODEV; flags VIABLE |
 *   CONTAINER_SET once in a container, else VIABLE unless a kernel driver owns a device's DMA.
 * - SET_CONTAINER(container fd): EBADF unknown fd, EINVAL already in a container, ENODEV no
 *   devices, EINVAL not a container fd, EPERM kernel driver owns DMA, then type1's attach
 *   errors (EINVAL reserved/aperture conflict, EFAULT replay).
 * - UNSET_CONTAINER: EINVAL not in a container, EBUSY while device fds are open.
 * - GET_DEVICE_FD("name\0"): EFAULT/EINVAL for an unterminated string, ENODEV unknown device,
 *   EINVAL without a container whose IOMMU is set, then the device's own open errors.
 * - anything else ENOTTY.
 */
import type { IommuDomain } from '../iommu/domain.js';
import { readS32 } from '../uapi/codec.js';
import { Errno, KernelError, fail, syscall } from '../uapi/errno.js';
import { VFIO_GROUP_STATUS_MINSZ, vfio_group_status } from '../uapi/structs.js';
import {
  VFIO_GROUP_FLAGS_CONTAINER_SET,
  VFIO_GROUP_FLAGS_VIABLE,
  VFIO_GROUP_GET_DEVICE_FD,
  VFIO_GROUP_GET_STATUS,
  VFIO_GROUP_SET_CONTAINER,
  VFIO_GROUP_UNSET_CONTAINER,
} from '../uapi/vfio.js';
import { VfioContainer } from './container.js';
import { VfioFile } from './fd.js';
import type { FdTable } from './fd.js';
import { PAGE_SIZE, SMMU_SW_MSI_REGION } from './type1/constants.js';
import type { IovaRange } from './type1/constants.js';
import type { DmaUnmapNotifier, PinnedPage, Type1Group, Type1Iommu } from './type1/iommu.js';
import { structArg } from './type1/ioctls.js';

/** A device as its VFIO group sees it (vfio-pci-core implements this for PCI functions). */
export interface VfioGroupMember {
  /** The device name GET_DEVICE_FD matches, e.g. "0000:00:02.1". */
  readonly name: string;
  /** The container's IOMMU domain on attach, null on detach (IOMMU-backed groups only). */
  setIommu(domain: IommuDomain | null): void;
  /** Opens the device and returns its fd object; may throw KernelError. */
  openDevice(): VfioFile;
  readonly isOpen?: boolean;
  /**
   * vfio_device_ops.match: > 0 if `buf` names this device (vfio-pci accepts "BDF vf_token=..."),
   * 0 if not, < 0 an errno to fail with. Without it the name must match exactly.
   */
  match?(buf: string): number;
}

export interface VfioGroupOptions {
  /** IOMMU group number (the <id> of /dev/vfio/<id>). */
  id: number;
  /** The process's descriptor table: container fds are looked up and device fds installed here. */
  fds: FdTable;
  /** True for devices behind the IOMMU; false for emulated devices that only pin pages. */
  iommuBacked: boolean;
  /** Reserved IOVA regions (IOMMU-backed only). Default: the SMMUv3 software MSI window. */
  reservedRegions?: readonly IovaRange[];
}

interface DeviceFile {
  fd: number;
  member: VfioGroupMember;
}

export class VfioGroup extends VfioFile implements Type1Group {
  readonly id: number;
  readonly iommuBacked: boolean;
  readonly reservedRegions: readonly IovaRange[];
  /**
   * Set by the host while a device of this IOMMU group is bound to a kernel (non-vfio)
   * driver that owns its DMA: the group is then not viable and SET_CONTAINER is EPERM.
   */
  kernelDmaOwner = false;
  private readonly fds: FdTable;
  private readonly memberMap = new Map<string, VfioGroupMember>();
  private containerRef: VfioContainer | null = null;
  private boundDomain: IommuDomain | null = null;
  private fileOpen = false;
  private releasePending = false;
  private readonly deviceFiles = new Map<VfioFile, DeviceFile>();

  constructor(opts: VfioGroupOptions) {
    super();
    if (!Number.isInteger(opts.id) || opts.id < 0) fail('EINVAL', `group id ${opts.id}`);
    this.id = opts.id;
    this.fds = opts.fds;
    this.iommuBacked = opts.iommuBacked;
    this.reservedRegions = opts.iommuBacked ? [...(opts.reservedRegions ?? [SMMU_SW_MSI_REGION])] : [];
  }

  // ---- membership (host side) -------------------------------------------------------------

  get memberCount(): number {
    return this.memberMap.size;
  }

  get members(): VfioGroupMember[] {
    return [...this.memberMap.values()];
  }

  /** The container the group is in, or null. */
  get container(): VfioContainer | null {
    return this.containerRef;
  }

  /** The IOMMU domain the members were given, or null. */
  get domain(): IommuDomain | null {
    return this.boundDomain;
  }

  /** True while user space owns the group's DMA (it sits in a container). */
  get dmaOwnerClaimed(): boolean {
    return this.containerRef !== null;
  }

  /** Open device fds obtained through this group. */
  get openDeviceCount(): number {
    return this.deviceFiles.size;
  }

  /** Adds a device (EEXIST for a duplicate name); it joins the group's domain at once if there is one. */
  addMember(member: VfioGroupMember): void {
    if (this.memberMap.has(member.name)) fail('EEXIST', `device ${member.name} is already in group ${this.id}`);
    this.memberMap.set(member.name, member);
    if (this.boundDomain !== null) member.setIommu(this.boundDomain);
  }

  /**
   * Removes a device (by object or name): its open device fds are closed first, it leaves
   * the domain, and the last device out detaches the group from its container. Returns false
   * when the device is not a member.
   */
  removeMember(member: VfioGroupMember | string): boolean {
    const name = typeof member === 'string' ? member : member.name;
    const m = this.memberMap.get(name);
    if (m === undefined || (typeof member !== 'string' && member !== m)) return false;
    for (const [file, info] of [...this.deviceFiles]) {
      if (info.member !== m) continue;
      if (this.fds.get(info.fd) === file) this.fds.close(info.fd);
      else file.close();
      this.deviceFiles.delete(file);
    }
    this.memberMap.delete(name);
    if (this.boundDomain !== null) m.setIommu(null);
    if (this.memberMap.size === 0) this.detachFromContainer();
    return true;
  }

  /** Type1 hands the container's domain to every member (null on detach). */
  bindDomain(domain: IommuDomain | null): void {
    this.boundDomain = domain;
    for (const m of this.memberMap.values()) m.setIommu(domain);
  }

  // ---- the file ---------------------------------------------------------------------------

  /** open(2) of /dev/vfio/<id>: this object as the open file. ENODEV dead group, EBUSY already open. */
  open(): VfioFile {
    if (this.memberMap.size === 0) fail('ENODEV', `group ${this.id} has no devices`);
    if (this.fileOpen || this.releasePending) fail('EBUSY', `group ${this.id} is already open`);
    this.fileOpen = true;
    return this;
  }

  /** open() and install into the process fd table: the fd number or -errno. */
  openFd(): number {
    return syscall(() => this.fds.install(this.open()));
  }

  override get closed(): boolean {
    return !this.fileOpen;
  }

  override ioctl(request: number, arg?: Uint8Array | number): number {
    return this.fileOpen ? super.ioctl(request, arg) : -Errno.EBADF;
  }

  override read(buf: Uint8Array, pos = 0): number {
    return this.fileOpen ? super.read(buf, pos) : -Errno.EBADF;
  }

  override write(buf: Uint8Array, pos = 0): number {
    return this.fileOpen ? super.write(buf, pos) : -Errno.EBADF;
  }

  /** close(2); the group object stays and can be opened again. */
  override close(): number {
    if (!this.fileOpen) return -Errno.EBADF;
    this.fileOpen = false;
    return syscall(() => this.release());
  }

  protected override release(): void {
    if (this.deviceFiles.size > 0) {
      this.releasePending = true;
      return;
    }
    this.detachFromContainer();
  }

  private detachFromContainer(): void {
    const c = this.containerRef;
    if (c === null) return;
    this.containerRef = null;
    c.detachGroup(this);
  }

  protected override doIoctl(request: number, arg?: Uint8Array | number): number | void {
    switch (request) {
      case VFIO_GROUP_GET_STATUS:
        return this.getStatusIoctl(arg);
      case VFIO_GROUP_SET_CONTAINER:
        return this.setContainerIoctl(arg);
      case VFIO_GROUP_UNSET_CONTAINER:
        return this.unsetContainerIoctl();
      case VFIO_GROUP_GET_DEVICE_FD:
        return this.getDeviceFdIoctl(arg);
      default:
        fail('ENOTTY', `group ioctl 0x${request.toString(16)}`);
    }
  }

  private getStatusIoctl(arg: unknown): number {
    const buf = structArg(arg, VFIO_GROUP_STATUS_MINSZ);
    if (vfio_group_status.read(buf, 'argsz') < VFIO_GROUP_STATUS_MINSZ) fail('EINVAL', 'GET_STATUS argsz');
    if (this.memberMap.size === 0) fail('ENODEV', `group ${this.id} has no devices`);
    let flags = 0;
    if (this.containerRef !== null) flags = VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE;
    else if (!this.kernelDmaOwner) flags = VFIO_GROUP_FLAGS_VIABLE;
    vfio_group_status.write(buf, 'flags', flags);
    return 0;
  }

  private setContainerIoctl(arg: unknown): number {
    // the kernel reads an int through the pointer; a plain number stands for that int
    const fd = typeof arg === 'number' ? arg : readS32(structArg(arg, 4), 0);
    const file = Number.isInteger(fd) ? this.fds.get(fd) : undefined;
    if (file === undefined) fail('EBADF', `fd ${fd}`);
    if (this.containerRef !== null) fail('EINVAL', `group ${this.id} is already in a container`);
    if (this.memberMap.size === 0) fail('ENODEV', `group ${this.id} has no devices`);
    if (!(file instanceof VfioContainer)) fail('EINVAL', `fd ${fd} is not a VFIO container`);
    if (this.kernelDmaOwner) fail('EPERM', `a kernel driver owns DMA in group ${this.id}`);
    file.attachGroup(this);
    this.containerRef = file;
    return 0;
  }

  private unsetContainerIoctl(): number {
    if (this.containerRef === null) fail('EINVAL', `group ${this.id} is not in a container`);
    if (this.deviceFiles.size > 0) fail('EBUSY', `group ${this.id} has open device fds`);
    this.detachFromContainer();
    return 0;
  }

  private getDeviceFdIoctl(arg: unknown): number {
    const name = readUserString(arg);
    const member = this.findMember(name);
    const c = this.containerRef;
    if (c === null || c.type1 === null) fail('EINVAL', 'GET_DEVICE_FD needs a container with an IOMMU');
    const file = member.openDevice();
    const fd = this.fds.install(file);
    this.track(file, fd, member);
    return fd;
  }

  /** vfio_device_get_from_name: the first member whose match (or exact name) accepts `name`. */
  private findMember(name: string): VfioGroupMember {
    for (const m of this.memberMap.values()) {
      const r = m.match ? m.match(name) : m.name === name ? 1 : 0;
      if (r < 0) throw new KernelError(-r, 'device match failed');
      if (r > 0) return m;
    }
    fail('ENODEV', `no device "${name}" in group ${this.id}`);
  }

  /**
   * Watches a device file so the group knows when it closes (a device fd holds the group
   * file and its container use, as in the kernel): the file's own close() is wrapped.
   */
  private track(file: VfioFile, fd: number, member: VfioGroupMember): void {
    if (this.deviceFiles.has(file)) return;
    this.deviceFiles.set(file, { fd, member });
    const close = file.close;
    file.close = () => {
      const r = close.call(file);
      this.deviceFileClosed(file);
      return r;
    };
  }

  private deviceFileClosed(file: VfioFile): void {
    if (!this.deviceFiles.delete(file)) return;
    if (this.deviceFiles.size === 0 && this.releasePending) {
      this.releasePending = false;
      this.detachFromContainer();
    }
  }

  // ---- vendor-driver API for the group's devices (throws KernelError) ---------------------

  private type1(): Type1Iommu {
    return this.containerRef?.type1 ?? fail('EINVAL', `group ${this.id} has no container with an IOMMU`);
  }

  /** vfio_pin_pages: see Type1Iommu.pinPages. */
  pinPages(iova: number, npage: number, prot: number): PinnedPage[] {
    return this.type1().pinPages(this, iova, npage, prot);
  }

  unpinPages(iova: number, npage: number): number {
    return this.type1().unpinPages(this, iova, npage);
  }

  /** vfio_dma_rw: see Type1Iommu.dmaRw. */
  dmaRw(iova: number, data: Uint8Array, write: boolean): void {
    this.type1().dmaRw(this, iova, data, write);
  }

  registerDmaUnmapNotifier(cb: DmaUnmapNotifier): void {
    this.type1().registerDmaUnmapNotifier(this, cb);
  }

  unregisterDmaUnmapNotifier(cb: DmaUnmapNotifier): boolean {
    return this.containerRef?.type1?.unregisterDmaUnmapNotifier(this, cb) ?? false;
  }

  // ---- typed wrappers: build the argument, call ioctl() ------------------------------------

  getStatus(): { ret: number; flags: number } {
    const buf = vfio_group_status.encode({ argsz: vfio_group_status.size });
    const ret = this.ioctl(VFIO_GROUP_GET_STATUS, buf);
    return { ret, flags: vfio_group_status.read(buf, 'flags') };
  }

  setContainer(containerFd: number): number {
    return this.ioctl(VFIO_GROUP_SET_CONTAINER, containerFd);
  }

  unsetContainer(): number {
    return this.ioctl(VFIO_GROUP_UNSET_CONTAINER);
  }

  /** GET_DEVICE_FD: the new device fd or -errno. */
  getDeviceFd(name: string): number {
    return this.ioctl(VFIO_GROUP_GET_DEVICE_FD, encodeCString(name));
  }
}

/** A NUL-terminated string as user memory. */
export function encodeCString(s: string): Uint8Array {
  const body = new TextEncoder().encode(s);
  const out = new Uint8Array(body.length + 1);
  out.set(body);
  return out;
}

/**
 * strndup_user(arg, PAGE_SIZE): the bytes up to the first NUL. No NUL within the first
 * PAGE_SIZE bytes is EINVAL; the buffer ending before a NUL is EFAULT (the read runs off
 * the user's memory).
 */
function readUserString(arg: unknown): string {
  if (!(arg instanceof Uint8Array)) fail('EFAULT', 'device name is not in user memory');
  const limit = Math.min(arg.length, PAGE_SIZE);
  const nul = arg.subarray(0, limit).indexOf(0);
  if (nul < 0) fail(arg.length >= PAGE_SIZE ? 'EINVAL' : 'EFAULT', 'unterminated device name');
  return new TextDecoder().decode(arg.subarray(0, nul));
}
