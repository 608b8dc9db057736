/**
 * The VFIO container (an open /dev/vfio/vfio) of one simulated process, with the type1 IOMMU
 * backend as its only IOMMU driver (vfio_container.c + vfio_iommu_type1.c).
 *
 * Life cycle, as in Linux: a new container answers GET_API_VERSION and CHECK_EXTENSION;
 * groups join it with VFIO_GROUP_SET_CONTAINER; VFIO_SET_IOMMU (EINVAL without a group or
 * when already set, ENODEV for a model type1 does not offer) opens type1 and attaches every
 * group; from then on the type1 ioctls work. Other ioctls, and type1 ioctls before
 * SET_IOMMU, are ENOTTY. When the last group leaves, the IOMMU is torn down and the container
 * is back to its unset state. Closing the container fd does not affect attached groups
 * (they hold their own reference, as in the kernel).
 *
 * Extensions answered (type1 loaded, no SPAPR/no-IOMMU drivers): TYPE1_IOMMU 1,
 * TYPE1v2_IOMMU 1, UNMAP_ALL 1, UPDATE_VADDR 1 only after SET_IOMMU and without emulated
 * groups, everything else 0 (see type1CheckExtension). Plain TYPE1 is accepted but has no
 * dirty tracking (DIRTY_PAGES -> EACCES) and keeps v1 unmap semantics.
 *
 * The typed helpers (mapDma, unmapDma, ...) only build the Linux struct bytes and call
 * ioctl(): the same path a raw ioctl takes.
 */
import type { UserAddressSpace } from '../mem/user-space.js';
import { readU32, readU64, writeU32, writeU64 } from '../uapi/codec.js';
import { walkCapChain } from '../uapi/capchain.js';
import type { CapRef } from '../uapi/capchain.js';
import { fail } from '../uapi/errno.js';
import {
  VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ,
  VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ,
  VFIO_IOMMU_TYPE1_DMA_UNMAP_BITMAP_MINSZ,
  VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ,
  vfio_bitmap,
  vfio_iommu_type1_dirty_bitmap,
  vfio_iommu_type1_dirty_bitmap_get,
  vfio_iommu_type1_dma_map,
  vfio_iommu_type1_dma_unmap,
  vfio_iommu_type1_info,
} from '../uapi/structs.js';
import {
  VFIO_API_VERSION,
  VFIO_CHECK_EXTENSION,
  VFIO_DMA_MAP_FLAG_READ,
  VFIO_DMA_MAP_FLAG_WRITE,
  VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP,
  VFIO_GET_API_VERSION,
  VFIO_IOMMU_DIRTY_PAGES,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_START,
  VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP,
  VFIO_IOMMU_GET_INFO,
  VFIO_IOMMU_MAP_DMA,
  VFIO_IOMMU_UNMAP_DMA,
  VFIO_SET_IOMMU,
  VFIO_TYPE1_IOMMU,
  VFIO_TYPE1v2_IOMMU,
} from '../uapi/vfio.js';
import { VfioFile } from './fd.js';
import type { FdTable } from './fd.js';
import type { VfioGroup } from './group.js';
import { Type1Iommu } from './type1/iommu.js';
import type { DmaUnmapNotifier, PinnedPage } from './type1/iommu.js';
import { intArg, type1CheckExtension, type1Ioctl } from './type1/ioctls.js';

export interface VfioContainerOptions {
  /** The process's address space: MAP_DMA vaddrs and bitmap pointers resolve here. */
  user: UserAddressSpace;
  /** The process's descriptor table (groups look containers up in it). */
  fds: FdTable;
  /** Reproduce the v16 migration series' UNMAP_DMA + GET_DIRTY_BITMAP quirks (never default). */
  legacy?: 'v16';
  /** Input address width of the SMMU domain (default 48): the IOVA aperture is [0, 2^gaw). */
  gaw?: number;
  /** The dma_entry_limit module parameter (default 65535 mappings per container). */
  dmaEntryLimit?: number;
}

export type IovaLike = number | bigint;

export interface MapDmaArgs {
  vaddr: IovaLike;
  iova: IovaLike;
  size: IovaLike;
  /** VFIO_DMA_MAP_FLAG_*; default READ | WRITE. */
  flags?: number;
}

export interface UserBitmapArgs {
  /** Default 4096. */
  pgsize?: IovaLike;
  /** Bytes of the user buffer. */
  size: IovaLike;
  /** User pointer to the buffer. */
  data: IovaLike;
}

export interface UnmapDmaArgs {
  iova: IovaLike;
  size: IovaLike;
  flags?: number;
  /** Adds a vfio_bitmap (argsz 48) and sets VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP. */
  bitmap?: UserBitmapArgs;
}

export interface UnmapDmaResult {
  ret: number;
  /** The `size` field after the call: bytes unmapped on success, unchanged on error. */
  size: bigint;
}

export interface IommuInfoResult {
  ret: number;
  argsz: number;
  flags: number;
  iovaPgsizes: bigint;
  capOffset: number;
  caps: CapRef[];
  /** The whole buffer as the kernel left it. */
  bytes: Uint8Array;
}

const DB_ARGSZ = vfio_iommu_type1_dirty_bitmap.offsetOf('argsz');
const DB_FLAGS = vfio_iommu_type1_dirty_bitmap.offsetOf('flags');
const GET_BASE = VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ;
const GET_IOVA = GET_BASE + vfio_iommu_type1_dirty_bitmap_get.offsetOf('iova');
const GET_SIZE = GET_BASE + vfio_iommu_type1_dirty_bitmap_get.offsetOf('size');
const GET_PGSIZE = GET_BASE + vfio_iommu_type1_dirty_bitmap_get.offsetOf('bitmap.pgsize');
const GET_BSIZE = GET_BASE + vfio_iommu_type1_dirty_bitmap_get.offsetOf('bitmap.size');
const GET_DATA = GET_BASE + vfio_iommu_type1_dirty_bitmap_get.offsetOf('bitmap.data');

export class VfioContainer extends VfioFile {
  readonly user: UserAddressSpace;
  readonly fds: FdTable;
  readonly legacy: 'v16' | null;
  private readonly gaw: number;
  private readonly dmaEntryLimit: number | undefined;
  private readonly groupList: VfioGroup[] = [];
  private iommu: Type1Iommu | null = null;

  constructor(opts: VfioContainerOptions) {
    super();
    this.user = opts.user;
    this.fds = opts.fds;
    this.legacy = opts.legacy ?? null;
    this.gaw = opts.gaw ?? 48;
    this.dmaEntryLimit = opts.dmaEntryLimit;
  }

  /** The type1 state once VFIO_SET_IOMMU succeeded, else null. */
  get type1(): Type1Iommu | null {
    return this.iommu;
  }

  get groups(): readonly VfioGroup[] {
    return this.groupList;
  }

  protected override doIoctl(request: number, arg?: Uint8Array | number): number | void {
    switch (request) {
      case VFIO_GET_API_VERSION:
        return VFIO_API_VERSION;
      case VFIO_CHECK_EXTENSION:
        return type1CheckExtension(this.iommu, intArg(arg));
      case VFIO_SET_IOMMU:
        this.openIommu(intArg(arg));
        return 0;
      default:
        if (this.iommu === null) fail('EINVAL', `container ioctl 0x${request.toString(16)} without an IOMMU driver`);
        return type1Ioctl(this.iommu, request, arg);
    }
  }

  /** vfio_ioctl_set_iommu with type1 as the only registered driver. */
  private openIommu(type: number): void {
    if (this.groupList.length === 0 || this.iommu !== null) fail('EINVAL', 'SET_IOMMU needs a group and no IOMMU yet');
    if (type1CheckExtension(null, type) <= 0) fail('ENODEV', `no IOMMU driver offers model ${type}`);
    if (type !== VFIO_TYPE1_IOMMU && type !== VFIO_TYPE1v2_IOMMU) fail('EINVAL', `type1 cannot open model ${type}`);
    const iommu = new Type1Iommu({
      v2: type === VFIO_TYPE1v2_IOMMU,
      user: this.user,
      gaw: this.gaw,
      dmaEntryLimit: this.dmaEntryLimit,
      legacy: this.legacy,
    });
    const done: VfioGroup[] = [];
    try {
      for (const g of this.groupList) {
        iommu.attachGroup(g);
        done.push(g);
      }
    } catch (e) {
      for (const g of done.reverse()) iommu.detachGroup(g);
      throw e;
    }
    this.iommu = iommu;
  }

  // ---- called by VfioGroup -----------------------------------------------------------------

  /** Adds a group (VFIO_GROUP_SET_CONTAINER); with an IOMMU set, type1 attaches it first. */
  attachGroup(group: VfioGroup): void {
    if (this.groupList.includes(group)) fail('EINVAL', `group ${group.id} is already in this container`);
    if (this.iommu !== null) this.iommu.attachGroup(group);
    this.groupList.push(group);
  }

  /** Removes a group; the last one out tears the IOMMU down (the container is deprivileged). */
  detachGroup(group: VfioGroup): void {
    const i = this.groupList.indexOf(group);
    if (i < 0) return;
    this.iommu?.detachGroup(group);
    this.groupList.splice(i, 1);
    if (this.groupList.length === 0) this.iommu = null;
  }

  // ---- vendor-driver API (throws KernelError; EINVAL before SET_IOMMU) --------------------

  private requireIommu(): Type1Iommu {
    return this.iommu ?? fail('EINVAL', 'container has no IOMMU driver');
  }

  /** vfio_pin_pages for a device of `group`; see Type1Iommu.pinPages for the errno order. */
  pinPages(group: VfioGroup, iova: number, npage: number, prot: number): PinnedPage[] {
    return this.requireIommu().pinPages(group, iova, npage, prot);
  }

  unpinPages(group: VfioGroup, iova: number, npage: number): number {
    return this.requireIommu().unpinPages(group, iova, npage);
  }

  /** vfio_dma_rw: write=true copies `data` into the mapped memory and marks it dirty. */
  dmaRw(group: VfioGroup, iova: number, data: Uint8Array, write: boolean): void {
    this.requireIommu().dmaRw(group, iova, data, write);
  }

  registerDmaUnmapNotifier(group: VfioGroup, cb: DmaUnmapNotifier): void {
    this.requireIommu().registerDmaUnmapNotifier(group, cb);
  }

  unregisterDmaUnmapNotifier(group: VfioGroup, cb: DmaUnmapNotifier): boolean {
    return this.iommu?.unregisterDmaUnmapNotifier(group, cb) ?? false;
  }

  // ---- typed wrappers: encode the struct, call ioctl() ------------------------------------

  getApiVersion(): number {
    return this.ioctl(VFIO_GET_API_VERSION);
  }

  checkExtension(ext: number): number {
    return this.ioctl(VFIO_CHECK_EXTENSION, ext);
  }

  setIommu(type: number): number {
    return this.ioctl(VFIO_SET_IOMMU, type);
  }

  /** VFIO_IOMMU_GET_INFO with a buffer of `argsz` bytes (default: room for any chain). */
  getIommuInfo(argsz = 256): IommuInfoResult {
    const bytes = new Uint8Array(Math.max(argsz, vfio_iommu_type1_info.size));
    vfio_iommu_type1_info.write(bytes, 'argsz', argsz);
    const ret = this.ioctl(VFIO_IOMMU_GET_INFO, bytes);
    const capOffset = readU32(bytes, 16);
    const walk = ret === 0 && capOffset !== 0 ? walkCapChain(bytes, capOffset, { minOffset: vfio_iommu_type1_info.size }) : null;
    return {
      ret,
      argsz: readU32(bytes, 0),
      flags: readU32(bytes, 4),
      iovaPgsizes: readU64(bytes, 8),
      capOffset,
      caps: walk?.caps ?? [],
      bytes,
    };
  }

  mapDma(args: MapDmaArgs): number {
    const buf = vfio_iommu_type1_dma_map.encode({
      argsz: vfio_iommu_type1_dma_map.size,
      flags: args.flags ?? VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
      vaddr: args.vaddr,
      iova: args.iova,
      size: args.size,
    });
    return this.ioctl(VFIO_IOMMU_MAP_DMA, buf);
  }

  unmapDma(args: UnmapDmaArgs): UnmapDmaResult {
    const withBitmap = args.bitmap !== undefined;
    const argsz = withBitmap ? VFIO_IOMMU_TYPE1_DMA_UNMAP_BITMAP_MINSZ : VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ;
    const buf = new Uint8Array(argsz);
    vfio_iommu_type1_dma_unmap.encode(
      {
        argsz,
        flags: (args.flags ?? 0) | (withBitmap ? VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP : 0),
        iova: args.iova,
        size: args.size,
      },
      buf,
    );
    if (args.bitmap) {
      vfio_bitmap.encode(
        { pgsize: args.bitmap.pgsize ?? 4096, size: args.bitmap.size, data: args.bitmap.data },
        buf,
        VFIO_IOMMU_TYPE1_DMA_UNMAP_MINSZ,
      );
    }
    const ret = this.ioctl(VFIO_IOMMU_UNMAP_DMA, buf);
    return { ret, size: readU64(buf, 16) };
  }

  private dirtyPagesFlag(flags: number): number {
    const buf = vfio_iommu_type1_dirty_bitmap.encode({ argsz: VFIO_IOMMU_TYPE1_DIRTY_BITMAP_MINSZ, flags });
    return this.ioctl(VFIO_IOMMU_DIRTY_PAGES, buf);
  }

  startDirtyTracking(): number {
    return this.dirtyPagesFlag(VFIO_IOMMU_DIRTY_PAGES_FLAG_START);
  }

  stopDirtyTracking(): number {
    return this.dirtyPagesFlag(VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP);
  }

  /** DIRTY_PAGES GET_BITMAP for [iova, iova+size) into the user buffer `bitmap`. */
  getDirtyBitmap(iova: IovaLike, size: IovaLike, bitmap: UserBitmapArgs): number {
    // written field by field (offsets from the codecs): a VMM calls this every iteration
    const buf = new Uint8Array(VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ);
    writeU32(buf, DB_ARGSZ, VFIO_IOMMU_TYPE1_DIRTY_BITMAP_GET_MINSZ);
    writeU32(buf, DB_FLAGS, VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP);
    writeU64(buf, GET_IOVA, iova);
    writeU64(buf, GET_SIZE, size);
    writeU64(buf, GET_PGSIZE, bitmap.pgsize ?? 4096);
    writeU64(buf, GET_BSIZE, bitmap.size);
    writeU64(buf, GET_DATA, bitmap.data);
    return this.ioctl(VFIO_IOMMU_DIRTY_PAGES, buf);
  }
}
