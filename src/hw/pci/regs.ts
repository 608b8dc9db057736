/**
 * PCI / PCIe configuration-space register offsets and bits, under the names Linux uses in
 * `include/uapi/linux/pci_regs.h` so a reader can cross-check them (test/pci-regs.test.ts
 * compares every value with the system header).
 */

export const PCI_CFG_SPACE_SIZE = 256;
export const PCI_CFG_SPACE_EXP_SIZE = 4096;

// Type 0 header.
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CLASS_DEVICE = 0x0a;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BIST = 0x0f;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_CARDBUS_CIS = 0x28;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
export const PCI_MIN_GNT = 0x3e;
export const PCI_MAX_LAT = 0x3f;
export const PCI_STD_HEADER_SIZEOF = 64;
export const PCI_STD_NUM_BARS = 6;

export const PCI_HEADER_TYPE_NORMAL = 0;

export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_PARITY = 0x40;
export const PCI_COMMAND_SERR = 0x100;
export const PCI_COMMAND_INTX_DISABLE = 0x400;

export const PCI_STATUS_INTERRUPT = 0x08;
export const PCI_STATUS_CAP_LIST = 0x10;
export const PCI_STATUS_PARITY = 0x100;
export const PCI_STATUS_SIG_TARGET_ABORT = 0x800;
export const PCI_STATUS_REC_TARGET_ABORT = 0x1000;
export const PCI_STATUS_REC_MASTER_ABORT = 0x2000;
export const PCI_STATUS_SIG_SYSTEM_ERROR = 0x4000;
export const PCI_STATUS_DETECTED_PARITY = 0x8000;

export const PCI_BASE_ADDRESS_SPACE_IO = 0x01;
export const PCI_BASE_ADDRESS_MEM_TYPE_64 = 0x04;
export const PCI_BASE_ADDRESS_MEM_PREFETCH = 0x08;

// Standard capability list.
export const PCI_CAP_LIST_ID = 0;
export const PCI_CAP_LIST_NEXT = 1;
export const PCI_CAP_FLAGS = 2;
export const PCI_CAP_ID_MSI = 0x05;
export const PCI_CAP_ID_EXP = 0x10;

// MSI capability (64-bit layout; the QM functions always advertise 64-bit + per-vector masking).
export const PCI_MSI_FLAGS = 0x02;
export const PCI_MSI_FLAGS_ENABLE = 0x0001;
export const PCI_MSI_FLAGS_QMASK = 0x000e;
export const PCI_MSI_FLAGS_QSIZE = 0x0070;
export const PCI_MSI_FLAGS_64BIT = 0x0080;
export const PCI_MSI_FLAGS_MASKBIT = 0x0100;
export const PCI_MSI_ADDRESS_LO = 0x04;
export const PCI_MSI_ADDRESS_HI = 0x08;
export const PCI_MSI_DATA_64 = 0x0c;
export const PCI_MSI_MASK_64 = 0x10;
export const PCI_MSI_PENDING_64 = 0x14;
/** Bytes of a 64-bit MSI capability with per-vector masking. */
export const PCI_MSI_64_PVM_SIZEOF = 0x18;

// PCI Express capability.
export const PCI_EXP_FLAGS = 0x02;
export const PCI_EXP_FLAGS_VERS = 0x000f;
export const PCI_EXP_FLAGS_TYPE = 0x00f0;
export const PCI_EXP_TYPE_ENDPOINT = 0x0;
export const PCI_EXP_TYPE_RC_END = 0x9;
export const PCI_EXP_DEVCAP = 0x04;
export const PCI_EXP_DEVCAP_PAYLOAD = 0x00000007;
export const PCI_EXP_DEVCAP_EXT_TAG = 0x00000020;
export const PCI_EXP_DEVCAP_RBER = 0x00008000;
export const PCI_EXP_DEVCAP_FLR = 0x10000000;
export const PCI_EXP_DEVCTL = 0x08;
export const PCI_EXP_DEVCTL_CERE = 0x0001;
export const PCI_EXP_DEVCTL_NFERE = 0x0002;
export const PCI_EXP_DEVCTL_FERE = 0x0004;
export const PCI_EXP_DEVCTL_URRE = 0x0008;
export const PCI_EXP_DEVCTL_RELAX_EN = 0x0010;
export const PCI_EXP_DEVCTL_PAYLOAD = 0x00e0;
export const PCI_EXP_DEVCTL_EXT_TAG = 0x0100;
export const PCI_EXP_DEVCTL_NOSNOOP_EN = 0x0800;
export const PCI_EXP_DEVCTL_READRQ = 0x7000;
export const PCI_EXP_DEVCTL_READRQ_512B = 0x2000;
export const PCI_EXP_DEVCTL_BCR_FLR = 0x8000;
export const PCI_EXP_DEVSTA = 0x0a;
export const PCI_EXP_DEVSTA_CED = 0x0001;
export const PCI_EXP_DEVSTA_NFED = 0x0002;
export const PCI_EXP_DEVSTA_FED = 0x0004;
export const PCI_EXP_DEVSTA_URD = 0x0008;
export const PCI_EXP_DEVSTA_TRPND = 0x0020;
export const PCI_EXP_LNKCAP = 0x0c;
export const PCI_EXP_LNKCTL = 0x10;
export const PCI_EXP_LNKSTA = 0x12;
export const PCI_EXP_DEVCAP2 = 0x24;
export const PCI_EXP_DEVCTL2 = 0x28;
export const PCI_EXP_LNKCAP2 = 0x2c;
export const PCI_EXP_LNKCTL2 = 0x30;
export const PCI_EXP_LNKSTA2 = 0x32;
/** Bytes of a version-2 PCIe capability structure (through Slot Status 2). */
export const PCI_EXP_V2_SIZEOF = 0x3c;

// Extended capabilities.
export const PCI_EXT_CAP_ID_SRIOV = 0x10;
export const PCI_EXT_CAP_SRIOV_SIZEOF = 0x40;

// SR-IOV extended capability.
export const PCI_SRIOV_CAP = 0x04;
export const PCI_SRIOV_CTRL = 0x08;
export const PCI_SRIOV_CTRL_VFE = 0x0001;
export const PCI_SRIOV_CTRL_VFM = 0x0002;
export const PCI_SRIOV_CTRL_INTR = 0x0004;
export const PCI_SRIOV_CTRL_MSE = 0x0008;
export const PCI_SRIOV_CTRL_ARI = 0x0010;
export const PCI_SRIOV_STATUS = 0x0a;
export const PCI_SRIOV_INITIAL_VF = 0x0c;
export const PCI_SRIOV_TOTAL_VF = 0x0e;
export const PCI_SRIOV_NUM_VF = 0x10;
export const PCI_SRIOV_FUNC_LINK = 0x12;
export const PCI_SRIOV_VF_OFFSET = 0x14;
export const PCI_SRIOV_VF_STRIDE = 0x16;
export const PCI_SRIOV_VF_DID = 0x1a;
export const PCI_SRIOV_SUP_PGSIZE = 0x1c;
export const PCI_SRIOV_SYS_PGSIZE = 0x20;
export const PCI_SRIOV_BAR = 0x24;
export const PCI_SRIOV_NUM_BARS = 6;
export const PCI_SRIOV_VFM = 0x3c;

/** Extended capability header: ID [15:0], version [19:16], next [31:20]. */
export function extCapHeader(id: number, version: number, next: number): number {
  return ((id & 0xffff) | ((version & 0xf) << 16) | ((next & 0xffc) << 20)) >>> 0;
}
