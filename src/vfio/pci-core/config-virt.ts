/**
 * Config space as the user of a vfio-pci device fd sees it (region 7), after Linux
 * vfio_pci_config.c. A shadow copy (`vconfig`) holds every virtualized field; a per-byte map
 * says which capability each byte belongs to; per-capability permission tables say, bit by
 * bit, whether a bit is virtualized (read from / written to the shadow) and whether the user
 * may write it (non-virtualized writable bits go to the hardware by read-modify-write).
 *
 * What the tables give, concretely:
 * - Vendor/Device ID come from the shadow, so a VF shows the ids Linux derives from its PF
 *   instead of the 0xFFFF the VF hardware returns.
 * - BARs and the ROM BAR are fully virtual: writes land in the shadow only, reads return the
 *   written value masked to the BAR size with the type bits (so all-ones gives the size mask).
 * - Command: every bit is written through except INTx Disable; Memory Space Enable is also
 *   remembered in the shadow, which is what gates BAR access through the fd (a VF has no
 *   memory bit in hardware, so for a VF the shadow bit is what reads back).
 * - Status, capability pointers and header fields are read-only.
 * - MSI: Enable, Multiple Message Enable, address and data are virtual (MSI is enabled with
 *   SET_IRQS, never by these writes); the mask and pending registers pass through.
 * - PCIe Device Control: Initiate FLR, Max Payload Size and Max Read Request are virtual;
 *   writing Initiate FLR resets the function, MRRS changes reach the hardware no lower than MPS.
 * - Capabilities vfio does not know are unlinked from the chain; extended capabilities are
 *   read-only; bytes outside any capability are raw read/write (Linux allows this for devices
 *   hiding registers in the gaps).
 *
 * Only the capability types the simulated functions carry (MSI, PCI Express, SR-IOV) have
 * tables; any other standard capability would be unlinked as an unknown one.
 */
import { fail } from '../../uapi/errno.js';
import type { PciFunction } from '../../hw/pci/function.js';
import { ACC_BAR_FLAGS } from '../../hw/pci/bars.js';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAPABILITY_LIST,
  PCI_CAP_ID_EXP,
  PCI_CAP_ID_MSI,
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_COMMAND,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_EXP_FLAGS,
  PCI_EXP_FLAGS_TYPE,
  PCI_EXP_FLAGS_VERS,
  PCI_EXP_TYPE_RC_END,
  PCI_EXT_CAP_ID_SRIOV,
  PCI_EXT_CAP_SRIOV_SIZEOF,
  PCI_INTERRUPT_PIN,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_64BIT,
  PCI_MSI_FLAGS_MASKBIT,
  PCI_ROM_ADDRESS,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STD_HEADER_SIZEOF,
  PCI_STD_NUM_BARS,
  PCI_VENDOR_ID,
} from '../../hw/pci/regs.js';
import {
  ALL,
  BASIC_PERM,
  DIRECT_RO_PERM,
  EXP_PERM,
  PCI_CAP_EXP_ENDPOINT_SIZEOF_V2,
  type Perm,
  UNASSIGNED_PERM,
  getLe,
  msiPerm,
  physRead,
  physWrite,
  setLe,
} from './config-perms.js';

/** pci_regs.h values the hardware model has no use for. */
const PCI_CAP_EXP_RC_ENDPOINT_SIZEOF_V1 = 0x0c;
const PCI_CAP_EXP_ENDPOINT_SIZEOF_V1 = 0x14;
const PCI_CAP_EXP_RC_ENDPOINT_SIZEOF_V2 = 0x2c;
const PCI_EXT_CAP_NEXT_MASK = 0xfff00000;

/** Map value of header bytes (vfio's PCI_CAP_ID_BASIC). */
const CAP_BASIC = 0;
/** Map value of bytes that belong to no capability (PCI_CAP_ID_INVALID). */
const CAP_INVALID = 0xff;

/** What the virtualization needs from the device it belongs to. */
export interface ConfigVirtHost {
  readonly fn: PciFunction;
  /** Size of BAR `bar` as the host assigned it (0 = no such BAR). */
  barSize(bar: number): number;
  /** MSI is enabled through VFIO_DEVICE_SET_IRQS (irq_type == MSI). */
  readonly msiEnabled: boolean;
  /** log2 of the vectors SET_IRQS allocated: the largest Multiple Message Enable allowed. */
  readonly msiQmax: number;
  /** pci_try_reset_function: reset the function keeping its saved config state. */
  resetFunction(): void;
}

export class ConfigVirt {
  readonly vconfig = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  readonly fn: PciFunction;
  bardirty = true;
  private readonly map = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  /** BAR registers as the host programmed them, for restoring after a backdoor reset. */
  private readonly rbar = new Uint32Array(PCI_STD_NUM_BARS + 1);
  private msi: Perm | null = null;

  constructor(readonly host: ConfigVirtHost) {
    this.fn = host.fn;
    this.init();
  }

  /** Memory Space Enable as the user last wrote it. */
  get memoryBit(): boolean {
    return (this.vconfig[PCI_COMMAND]! & PCI_COMMAND_MEMORY) !== 0;
  }

  /**
   * Reads or writes `buf` at `pos` of the config region. Accesses are chopped into naturally
   * aligned pieces that never cross a capability boundary. EFAULT outside the 4 KiB.
   */
  rw(buf: Uint8Array, pos: number, write: boolean): number {
    const total = buf.length;
    if (!Number.isInteger(pos) || pos < 0 || pos >= PCI_CFG_SPACE_EXP_SIZE || pos + total > PCI_CFG_SPACE_EXP_SIZE) {
      fail('EFAULT', `config access [${pos}, +${total}) outside the 4 KiB space`);
    }
    let done = 0;
    while (done < total) done += this.rwChunk(buf, done, total - done, pos + done, write);
    return total;
  }

  private rwChunk(buf: Uint8Array, at: number, left: number, pos: number, write: boolean): number {
    let count = Math.min(left, this.remainingDword(pos));
    if (count >= 4 && pos % 4 === 0) count = 4;
    else if (count >= 2 && pos % 2 === 0) count = 2;
    else count = 1;
    const cap = this.map[pos]!;
    let perm: Perm;
    let start = 0;
    if (cap === CAP_INVALID) {
      perm = UNASSIGNED_PERM;
      start = pos;
    } else if (pos >= PCI_CFG_SPACE_SIZE) {
      perm = DIRECT_RO_PERM;
      start = this.capStart(pos);
    } else {
      perm = cap === CAP_BASIC ? BASIC_PERM : cap === PCI_CAP_ID_MSI && this.msi ? this.msi : cap === PCI_CAP_ID_EXP ? EXP_PERM : DIRECT_RO_PERM;
      if (cap !== CAP_BASIC) start = this.capStart(pos);
    }
    const offset = pos - start;
    if (write) {
      if (perm.writeFn) perm.writeFn(this, pos, count, perm, offset, getLe(buf, at, count));
    } else {
      setLe(buf, at, count, perm.readFn ? perm.readFn(this, pos, count, perm, offset) : 0);
    }
    return count;
  }

  /** Bytes from pos to the end of its dword that belong to the same capability. */
  private remainingDword(pos: number): number {
    const cap = this.map[pos];
    let i = 1;
    while ((pos + i) % 4 !== 0 && this.map[pos + i] === cap) i++;
    return i;
  }

  /** vfio_find_cap_start. */
  capStart(pos: number): number {
    const cap = this.map[pos];
    if (cap === CAP_BASIC && pos < PCI_CFG_SPACE_SIZE) return 0;
    const base = pos >= PCI_CFG_SPACE_SIZE ? PCI_CFG_SPACE_SIZE : PCI_STD_HEADER_SIZEOF;
    while (pos - 1 >= base && this.map[pos - 1] === cap) pos--;
    return pos;
  }

  /** vfio_bar_fixup: BAR registers read back as the size mask applied to what was written. */
  barFixup(): void {
    if (!this.bardirty) return;
    const v = this.vconfig;
    for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
      const reg = PCI_BASE_ADDRESS_0 + 4 * i;
      const size = this.host.barSize(i);
      if (size === 0) {
        setLe(v, reg, 4, 0);
        continue;
      }
      const { lo, hi } = sizeMask(size);
      setLe(v, reg, 4, ((getLe(v, reg, 4) & lo & ~0xf) | ACC_BAR_FLAGS) >>> 0);
      if (i + 1 < PCI_STD_NUM_BARS) {
        setLe(v, reg + 4, 4, (getLe(v, reg + 4, 4) & hi) >>> 0);
        i++;
      }
    }
    // No function here has an expansion ROM: the ROM BAR reads as unimplemented.
    setLe(v, PCI_ROM_ADDRESS, 4, 0);
    this.bardirty = false;
  }

  /** vfio_need_bar_restore: the hardware BARs differ from what the host programmed. */
  needBarRestore(): boolean {
    for (let i = 0; i < PCI_STD_NUM_BARS; i++) {
      if (physRead(this, PCI_BASE_ADDRESS_0 + 4 * i, 4) !== this.rbar[i]) return true;
    }
    return physRead(this, PCI_ROM_ADDRESS, 4) !== this.rbar[PCI_STD_NUM_BARS];
  }

  /** vfio_bar_restore (a VF's BARs live in its PF, nothing to restore). */
  barRestore(): void {
    if (this.fn.isVf) return;
    for (let i = 0; i < PCI_STD_NUM_BARS; i++) physWrite(this, PCI_BASE_ADDRESS_0 + 4 * i, 4, this.rbar[i]!);
    physWrite(this, PCI_ROM_ADDRESS, 4, this.rbar[PCI_STD_NUM_BARS]!);
  }

  // ---- vfio_config_init ------------------------------------------------------------------

  private init(): void {
    this.fill(0, PCI_STD_HEADER_SIZEOF);
    this.map.fill(CAP_BASIC, 0, PCI_STD_HEADER_SIZEOF);
    this.map.fill(CAP_INVALID, PCI_STD_HEADER_SIZEOF);
    for (let i = 0; i < PCI_STD_NUM_BARS; i++) this.rbar[i] = getLe(this.vconfig, PCI_BASE_ADDRESS_0 + 4 * i, 4);
    this.rbar[PCI_STD_NUM_BARS] = getLe(this.vconfig, PCI_ROM_ADDRESS, 4);
    if (this.fn.isVf) {
      setLe(this.vconfig, PCI_VENDOR_ID, 2, this.fn.vendorId);
      setLe(this.vconfig, PCI_DEVICE_ID, 2, this.fn.deviceId);
      // SR-IOV: the Interrupt Pin of a VF is read-only zero whatever the hardware says.
      this.vconfig[PCI_INTERRUPT_PIN] = 0;
    }
    this.capInit();
    this.ecapInit();
  }

  /** Copies hardware bytes [pos, pos+len) into the shadow, in aligned accesses. */
  private fill(pos: number, len: number): void {
    const end = pos + len;
    while (pos < end) {
      const n = end - pos >= 4 && pos % 4 === 0 ? 4 : end - pos >= 2 && pos % 2 === 0 ? 2 : 1;
      setLe(this.vconfig, pos, n, physRead(this, pos, n));
      pos += n;
    }
  }

  private capLength(cap: number, pos: number): number {
    if (cap === PCI_CAP_ID_MSI) {
      const flags = physRead(this, pos + PCI_MSI_FLAGS, 2);
      let len = 10;
      if (flags & PCI_MSI_FLAGS_64BIT) len += 4;
      if (flags & PCI_MSI_FLAGS_MASKBIT) len += 10;
      this.msi ??= msiPerm(len, flags);
      return len;
    }
    if (cap === PCI_CAP_ID_EXP) {
      const flags = physRead(this, pos + PCI_EXP_FLAGS, 2);
      const rcEnd = (flags & PCI_EXP_FLAGS_TYPE) >> 4 === PCI_EXP_TYPE_RC_END;
      if ((flags & PCI_EXP_FLAGS_VERS) === 1) return rcEnd ? PCI_CAP_EXP_RC_ENDPOINT_SIZEOF_V1 : PCI_CAP_EXP_ENDPOINT_SIZEOF_V1;
      return rcEnd ? PCI_CAP_EXP_RC_ENDPOINT_SIZEOF_V2 : PCI_CAP_EXP_ENDPOINT_SIZEOF_V2;
    }
    return 0;
  }

  private capInit(): void {
    if ((physRead(this, PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) === 0) return;
    let pos = this.vconfig[PCI_CAPABILITY_LIST]! & ~3;
    let prev = PCI_CAPABILITY_LIST;
    let caps = 0;
    for (let loops = PCI_CFG_SPACE_SIZE; pos >= PCI_STD_HEADER_SIZEOF && loops > 0; loops--) {
      const cap = physRead(this, pos + PCI_CAP_LIST_ID, 1);
      const next = physRead(this, pos + PCI_CAP_LIST_NEXT, 1) & ~3;
      const len = this.capLength(cap, pos);
      if (len === 0 || pos + len > PCI_CFG_SPACE_SIZE) {
        this.vconfig[prev] = next; // unlink a capability vfio has no table for
        pos = next;
        continue;
      }
      this.map.fill(cap, pos, pos + len);
      this.fill(pos, len);
      prev = pos + PCI_CAP_LIST_NEXT;
      pos = next;
      caps++;
    }
    if (caps === 0) setLe(this.vconfig, PCI_STATUS, 2, getLe(this.vconfig, PCI_STATUS, 2) & ~PCI_STATUS_CAP_LIST);
  }

  private ecapInit(): void {
    let epos = PCI_CFG_SPACE_SIZE;
    let prev = -1;
    let ecaps = 0;
    for (let loops = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 4; loops > 0 && epos >= PCI_CFG_SPACE_SIZE; loops--) {
      const header = physRead(this, epos, 4);
      const ecap = header & 0xffff;
      const next = (header >>> 20) & 0xffc;
      let len = ecap === PCI_EXT_CAP_ID_SRIOV ? PCI_EXT_CAP_SRIOV_SIZEOF : 0;
      let hidden = false;
      if (len === 0) {
        if (prev >= 0) {
          setLe(this.vconfig, prev, 4, ((getLe(this.vconfig, prev, 4) & ~PCI_EXT_CAP_NEXT_MASK) | (next << 20)) >>> 0);
          epos = next;
          continue;
        }
        // The list must start at 0x100: keep a placeholder with id 0 and the real next.
        len = 4;
        hidden = true;
      }
      this.map.fill(ecap === CAP_INVALID ? 0xfe : ecap & 0xff, epos, epos + len);
      this.fill(epos, len);
      if (hidden) setLe(this.vconfig, epos, 4, (getLe(this.vconfig, epos, 4) & PCI_EXT_CAP_NEXT_MASK) >>> 0);
      else ecaps++;
      prev = epos;
      epos = next;
    }
    if (ecaps === 0) setLe(this.vconfig, PCI_CFG_SPACE_SIZE, 4, 0);
  }
}

/** The address bits of a 64-bit BAR of `size` bytes, as two dword masks. */
function sizeMask(size: number): { lo: number; hi: number } {
  const two32 = 2 ** 32;
  if (size < two32) return { lo: (two32 - size) >>> 0, hi: ALL };
  return { lo: 0, hi: (two32 - size / two32) >>> 0 };
}
