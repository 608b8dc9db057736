/**
 * The constants of Linux `include/uapi/linux/vfio.h`, under their Linux names and values.
 *
 * Baseline is the Linux 6.1 header (the copy in /usr/include); names added after 6.1 that the
 * simulator needs (pre-copy migration, MIG_DATA_SIZE) are marked "since 6.x". Left out on
 * purpose, because no PCI function in this simulator can use them: other bus types (ccw, ap,
 * platform, amba, fsl-mc, cdx, s390 zPCI device caps), the ppc SPAPR TCE IOMMU ioctls and EEH
 * PE operations, graphics planes / dma-buf / EDID, and Intel IGD region subtypes. The
 * CHECK_EXTENSION ids of SPAPR/EEH and the vfio_device_info bus flags are kept, because a
 * container or device must still be able to answer "not supported" / report its own bus.
 *
 * Value types: every constant is a JS number. C flag words that are u64 (feature migration
 * flags) only use low bits, and the one u32 flag at bit 31 (VFIO_REGION_TYPE_PCI_VENDOR_TYPE)
 * is the positive number 0x80000000, i.e. its u32 bit pattern, never a negative int.
 */

/** `_IO(type, nr)` from asm-generic/ioctl.h: direction NONE and size 0 leave `(type << 8) | nr`. */
export function _IO(type: number, nr: number): number {
  return ((type & 0xff) << 8) | (nr & 0xff);
}

export const VFIO_API_VERSION = 0;

/* Extensions answered by VFIO_CHECK_EXTENSION */
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_SPAPR_TCE_IOMMU = 2;
export const VFIO_TYPE1v2_IOMMU = 3;
export const VFIO_DMA_CC_IOMMU = 4;
export const VFIO_EEH = 5;
export const VFIO_TYPE1_NESTING_IOMMU = 6;
export const VFIO_SPAPR_TCE_v2_IOMMU = 7;
export const VFIO_NOIOMMU_IOMMU = 8;
export const VFIO_UNMAP_ALL = 9;
export const VFIO_UPDATE_VADDR = 10;

/** `';'` */
export const VFIO_TYPE = 0x3b;
export const VFIO_BASE = 100;

/* Container fd (/dev/vfio/vfio) */
export const VFIO_GET_API_VERSION = _IO(VFIO_TYPE, VFIO_BASE + 0);
export const VFIO_CHECK_EXTENSION = _IO(VFIO_TYPE, VFIO_BASE + 1);
export const VFIO_SET_IOMMU = _IO(VFIO_TYPE, VFIO_BASE + 2);

/* Group fd (/dev/vfio/$GROUP) */
export const VFIO_GROUP_FLAGS_VIABLE = 1 << 0;
export const VFIO_GROUP_FLAGS_CONTAINER_SET = 1 << 1;
export const VFIO_GROUP_GET_STATUS = _IO(VFIO_TYPE, VFIO_BASE + 3);
export const VFIO_GROUP_SET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 4);
export const VFIO_GROUP_UNSET_CONTAINER = _IO(VFIO_TYPE, VFIO_BASE + 5);
export const VFIO_GROUP_GET_DEVICE_FD = _IO(VFIO_TYPE, VFIO_BASE + 6);

/* Device fd: vfio_device_info */
export const VFIO_DEVICE_FLAGS_RESET = 1 << 0;
export const VFIO_DEVICE_FLAGS_PCI = 1 << 1;
export const VFIO_DEVICE_FLAGS_PLATFORM = 1 << 2;
export const VFIO_DEVICE_FLAGS_AMBA = 1 << 3;
export const VFIO_DEVICE_FLAGS_CCW = 1 << 4;
export const VFIO_DEVICE_FLAGS_AP = 1 << 5;
export const VFIO_DEVICE_FLAGS_FSL_MC = 1 << 6;
export const VFIO_DEVICE_FLAGS_CAPS = 1 << 7;
export const VFIO_DEVICE_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 7);
export const VFIO_DEVICE_API_PCI_STRING = 'vfio-pci';

/* vfio_region_info */
export const VFIO_REGION_INFO_FLAG_READ = 1 << 0;
export const VFIO_REGION_INFO_FLAG_WRITE = 1 << 1;
export const VFIO_REGION_INFO_FLAG_MMAP = 1 << 2;
export const VFIO_REGION_INFO_FLAG_CAPS = 1 << 3;
export const VFIO_DEVICE_GET_REGION_INFO = _IO(VFIO_TYPE, VFIO_BASE + 8);
export const VFIO_REGION_INFO_CAP_SPARSE_MMAP = 1;
export const VFIO_REGION_INFO_CAP_TYPE = 2;
export const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = 3;
export const VFIO_REGION_INFO_CAP_NVLINK2_SSATGT = 4;
export const VFIO_REGION_INFO_CAP_NVLINK2_LNKSPD = 5;

/* Region types (one id space per bus driver) */
export const VFIO_REGION_TYPE_PCI_VENDOR_TYPE = 0x80000000;
export const VFIO_REGION_TYPE_PCI_VENDOR_MASK = 0xffff;
export const VFIO_REGION_TYPE_GFX = 1;
export const VFIO_REGION_TYPE_CCW = 2;
/** Pre-5.18 name of the migration v1 region type. */
export const VFIO_REGION_TYPE_MIGRATION = 3;
/** 5.18+ name of the same value (the v1 protocol was withdrawn from the kernel). */
export const VFIO_REGION_TYPE_MIGRATION_DEPRECATED = VFIO_REGION_TYPE_MIGRATION;
export const VFIO_REGION_SUBTYPE_NVIDIA_NVLINK2_RAM = 1;
export const VFIO_REGION_SUBTYPE_IBM_NVLINK2_ATSD = 1;
/** Pre-5.18 name of the migration v1 region subtype. */
export const VFIO_REGION_SUBTYPE_MIGRATION = 1;
export const VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED = VFIO_REGION_SUBTYPE_MIGRATION;

/*
 * Migration v1 device_state bits (vfio_device_migration_info.device_state). Before 5.18 these
 * were spelled VFIO_DEVICE_STATE_STOP/RUNNING/SAVING/RESUMING; those spellings now name the
 * v2 enum below with different values, so only the V1_ names can exist side by side with it.
 */
export const VFIO_DEVICE_STATE_V1_STOP = 0;
export const VFIO_DEVICE_STATE_V1_RUNNING = 1 << 0;
export const VFIO_DEVICE_STATE_V1_SAVING = 1 << 1;
export const VFIO_DEVICE_STATE_V1_RESUMING = 1 << 2;
export const VFIO_DEVICE_STATE_MASK =
  VFIO_DEVICE_STATE_V1_RUNNING | VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING;

/** v1: RESUMING may only appear alone; every other combination of bits is a valid state. */
export function VFIO_DEVICE_STATE_VALID(state: number): boolean {
  return state & VFIO_DEVICE_STATE_V1_RESUMING
    ? (state & VFIO_DEVICE_STATE_MASK) === VFIO_DEVICE_STATE_V1_RESUMING
    : true;
}

/** v1: SAVING|RESUMING together is how the region protocol encodes the error state. */
export function VFIO_DEVICE_STATE_IS_ERROR(state: number): boolean {
  return (
    (state & VFIO_DEVICE_STATE_MASK) === (VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING)
  );
}

/** v1: keeps the bits outside the mask and forces the error encoding; returns a u32. */
export function VFIO_DEVICE_STATE_SET_ERROR(state: number): number {
  return (
    ((state & ~VFIO_DEVICE_STATE_MASK) | VFIO_DEVICE_STATE_V1_SAVING | VFIO_DEVICE_STATE_V1_RESUMING) >>> 0
  );
}

/* vfio_irq_info / vfio_irq_set */
export const VFIO_IRQ_INFO_EVENTFD = 1 << 0;
export const VFIO_IRQ_INFO_MASKABLE = 1 << 1;
export const VFIO_IRQ_INFO_AUTOMASKED = 1 << 2;
export const VFIO_IRQ_INFO_NORESIZE = 1 << 3;
export const VFIO_DEVICE_GET_IRQ_INFO = _IO(VFIO_TYPE, VFIO_BASE + 9);
export const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
export const VFIO_IRQ_SET_DATA_BOOL = 1 << 1;
export const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
export const VFIO_IRQ_SET_ACTION_MASK = 1 << 3;
export const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
export const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;
export const VFIO_DEVICE_SET_IRQS = _IO(VFIO_TYPE, VFIO_BASE + 10);
export const VFIO_IRQ_SET_DATA_TYPE_MASK =
  VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_DATA_BOOL | VFIO_IRQ_SET_DATA_EVENTFD;
export const VFIO_IRQ_SET_ACTION_TYPE_MASK =
  VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER;
export const VFIO_DEVICE_RESET = _IO(VFIO_TYPE, VFIO_BASE + 11);

/* vfio-pci fixed region indexes (anonymous enum) */
export const VFIO_PCI_BAR0_REGION_INDEX = 0;
export const VFIO_PCI_BAR1_REGION_INDEX = 1;
export const VFIO_PCI_BAR2_REGION_INDEX = 2;
export const VFIO_PCI_BAR3_REGION_INDEX = 3;
export const VFIO_PCI_BAR4_REGION_INDEX = 4;
export const VFIO_PCI_BAR5_REGION_INDEX = 5;
export const VFIO_PCI_ROM_REGION_INDEX = 6;
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_VGA_REGION_INDEX = 8;
export const VFIO_PCI_NUM_REGIONS = 9;

/* vfio-pci fixed IRQ indexes (anonymous enum) */
export const VFIO_PCI_INTX_IRQ_INDEX = 0;
export const VFIO_PCI_MSI_IRQ_INDEX = 1;
export const VFIO_PCI_MSIX_IRQ_INDEX = 2;
export const VFIO_PCI_ERR_IRQ_INDEX = 3;
export const VFIO_PCI_REQ_IRQ_INDEX = 4;
export const VFIO_PCI_NUM_IRQS = 5;

/* PCI hot reset */
export const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12);
export const VFIO_DEVICE_PCI_HOT_RESET = _IO(VFIO_TYPE, VFIO_BASE + 13);

/* ioeventfd */
export const VFIO_DEVICE_IOEVENTFD_8 = 1 << 0;
export const VFIO_DEVICE_IOEVENTFD_16 = 1 << 1;
export const VFIO_DEVICE_IOEVENTFD_32 = 1 << 2;
export const VFIO_DEVICE_IOEVENTFD_64 = 1 << 3;
export const VFIO_DEVICE_IOEVENTFD_SIZE_MASK = 0xf;
export const VFIO_DEVICE_IOEVENTFD = _IO(VFIO_TYPE, VFIO_BASE + 16);

/* VFIO_DEVICE_FEATURE */
export const VFIO_DEVICE_FEATURE_MASK = 0xffff;
export const VFIO_DEVICE_FEATURE_GET = 1 << 16;
export const VFIO_DEVICE_FEATURE_SET = 1 << 17;
export const VFIO_DEVICE_FEATURE_PROBE = 1 << 18;
export const VFIO_DEVICE_FEATURE = _IO(VFIO_TYPE, VFIO_BASE + 17);
export const VFIO_DEVICE_FEATURE_PCI_VF_TOKEN = 0;
export const VFIO_DEVICE_FEATURE_MIGRATION = 1;
export const VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE = 2;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY = 3;
export const VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP = 4;
export const VFIO_DEVICE_FEATURE_LOW_POWER_EXIT = 5;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_START = 6;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_STOP = 7;
export const VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT = 8;
/** Since 6.3: `{u64 stop_copy_length}`, an estimate of the STOP_COPY stream size. */
export const VFIO_DEVICE_FEATURE_MIG_DATA_SIZE = 9;

/* vfio_device_feature_migration.flags (a u64 in C; all bits fit a number) */
export const VFIO_MIGRATION_STOP_COPY = 1 << 0;
export const VFIO_MIGRATION_P2P = 1 << 1;
/** Since 6.2. */
export const VFIO_MIGRATION_PRE_COPY = 1 << 2;

/* enum vfio_device_mig_state (migration v2) */
export const VFIO_DEVICE_STATE_ERROR = 0;
export const VFIO_DEVICE_STATE_STOP = 1;
export const VFIO_DEVICE_STATE_RUNNING = 2;
export const VFIO_DEVICE_STATE_STOP_COPY = 3;
export const VFIO_DEVICE_STATE_RESUMING = 4;
export const VFIO_DEVICE_STATE_RUNNING_P2P = 5;
/** Since 6.2. */
export const VFIO_DEVICE_STATE_PRE_COPY = 6;
/** Since 6.2. */
export const VFIO_DEVICE_STATE_PRE_COPY_P2P = 7;

/** `enum vfio_device_mig_state` as one object, keyed by the name without its prefix. */
export const VfioMigState = {
  ERROR: VFIO_DEVICE_STATE_ERROR,
  STOP: VFIO_DEVICE_STATE_STOP,
  RUNNING: VFIO_DEVICE_STATE_RUNNING,
  STOP_COPY: VFIO_DEVICE_STATE_STOP_COPY,
  RESUMING: VFIO_DEVICE_STATE_RESUMING,
  RUNNING_P2P: VFIO_DEVICE_STATE_RUNNING_P2P,
  PRE_COPY: VFIO_DEVICE_STATE_PRE_COPY,
  PRE_COPY_P2P: VFIO_DEVICE_STATE_PRE_COPY_P2P,
} as const;
export type VfioMigStateName = keyof typeof VfioMigState;
export type VfioMigStateValue = (typeof VfioMigState)[VfioMigStateName];

/**
 * Number of states of the v2 FSM (ERROR..PRE_COPY_P2P), the size of the core's 8x8 table;
 * vfio_main.c defines it as PRE_COPY_P2P + 1.
 */
export const VFIO_DEVICE_NUM_STATES = 8;

const MIG_STATE_NAMES: readonly VfioMigStateName[] = [
  'ERROR', 'STOP', 'RUNNING', 'STOP_COPY', 'RESUMING', 'RUNNING_P2P', 'PRE_COPY', 'PRE_COPY_P2P',
];

/** Short name of a v2 state ("STOP_COPY"); values outside the enum give `"INVALID(n)"`. */
export function migStateName(n: number): string {
  return Number.isInteger(n) && n >= 0 && n < MIG_STATE_NAMES.length
    ? MIG_STATE_NAMES[n]!
    : `INVALID(${n})`;
}

/** True when `n` is a member of enum vfio_device_mig_state (including the 6.2 states). */
export function isMigState(n: number): n is VfioMigStateValue {
  return Number.isInteger(n) && n >= 0 && n < VFIO_DEVICE_NUM_STATES;
}

/** Since 6.2, on the migration data fd while in PRE_COPY / PRE_COPY_P2P. */
export const VFIO_MIG_GET_PRECOPY_INFO = _IO(VFIO_TYPE, VFIO_BASE + 21);

/* Type1 IOMMU */
export const VFIO_IOMMU_INFO_PGSIZES = 1 << 0;
export const VFIO_IOMMU_INFO_CAPS = 1 << 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = 1;
export const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = 2;
export const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = 3;
export const VFIO_IOMMU_GET_INFO = _IO(VFIO_TYPE, VFIO_BASE + 12);
export const VFIO_DMA_MAP_FLAG_READ = 1 << 0;
export const VFIO_DMA_MAP_FLAG_WRITE = 1 << 1;
export const VFIO_DMA_MAP_FLAG_VADDR = 1 << 2;
export const VFIO_IOMMU_MAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 13);
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1 << 0;
export const VFIO_DMA_UNMAP_FLAG_ALL = 1 << 1;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 1 << 2;
export const VFIO_IOMMU_UNMAP_DMA = _IO(VFIO_TYPE, VFIO_BASE + 14);
export const VFIO_IOMMU_ENABLE = _IO(VFIO_TYPE, VFIO_BASE + 15);
export const VFIO_IOMMU_DISABLE = _IO(VFIO_TYPE, VFIO_BASE + 16);
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = 1 << 0;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = 1 << 1;
export const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = 1 << 2;
export const VFIO_IOMMU_DIRTY_PAGES = _IO(VFIO_TYPE, VFIO_BASE + 17);

/*
 * Device fd offsets of vfio-pci regions. These come from the kernel-internal
 * vfio_pci_core.h, but every vfio-pci user relies on them: region i starts at i << 40.
 * The shift is done with multiplication because JS bit operators are 32-bit; all offsets
 * of indexes below 8192 stay exact numbers (< 2^53).
 */
export const VFIO_PCI_OFFSET_SHIFT = 40;
const REGION_SPAN = 2 ** VFIO_PCI_OFFSET_SHIFT;
/** `(1 << 40) - 1`: the offset-within-region part of a device fd offset. */
export const VFIO_PCI_OFFSET_MASK = REGION_SPAN - 1;

/** Start of region `index` in the device fd: `index << 40`. */
export function VFIO_PCI_INDEX_TO_OFFSET(index: number): number {
  return index * REGION_SPAN;
}

/** Region index of a device fd offset: `off >> 40`. */
export function VFIO_PCI_OFFSET_TO_INDEX(off: number): number {
  return Math.floor(off / REGION_SPAN);
}

/** Offset within its region of a device fd offset: `off & VFIO_PCI_OFFSET_MASK`. */
export function vfioPciOffsetInRegion(off: number): number {
  return off - VFIO_PCI_OFFSET_TO_INDEX(off) * REGION_SPAN;
}
