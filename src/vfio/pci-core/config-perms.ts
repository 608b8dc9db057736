/**
 * The permission tables of vfio's config virtualization (see config-virt.ts) and the
 * read/write handlers attached to them, after Linux vfio_pci_config.c: per capability type,
 * which bits are virtual (kept in the shadow config) and which the user may write.
 */
import {
  PCI_BASE_ADDRESS_0,
  PCI_BIST,
  PCI_CACHE_LINE_SIZE,
  PCI_CAPABILITY_LIST,
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CFG_SPACE_SIZE,
  PCI_COMMAND,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_IO,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_FLR,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL2,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_EXP_DEVCTL_PAYLOAD,
  PCI_EXP_DEVCTL_READRQ,
  PCI_INTERRUPT_LINE,
  PCI_INTERRUPT_PIN,
  PCI_LATENCY_TIMER,
  PCI_MSI_ADDRESS_HI,
  PCI_MSI_ADDRESS_LO,
  PCI_MSI_DATA_64,
  PCI_MSI_FLAGS,
  PCI_MSI_FLAGS_64BIT,
  PCI_MSI_FLAGS_ENABLE,
  PCI_MSI_FLAGS_MASKBIT,
  PCI_MSI_FLAGS_QSIZE,
  PCI_MSI_MASK_64,
  PCI_MSI_PENDING_64,
  PCI_ROM_ADDRESS,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STD_HEADER_SIZEOF,
  PCI_STD_NUM_BARS,
  PCI_VENDOR_ID,
} from '../../hw/pci/regs.js';
import type { ConfigVirt } from './config-virt.js';

/** pci_regs.h values the hardware model has no use for. */
const PCI_EXP_DEVCTL_PHANTOM = 0x0200;
const PCI_EXP_DEVCTL2_ARI = 0x0020;
export const PCI_CAP_EXP_ENDPOINT_SIZEOF_V2 = 0x3c;

export type ReadFn = (c: ConfigVirt, pos: number, count: number, perm: Perm, offset: number) => number;
export type WriteFn = (c: ConfigVirt, pos: number, count: number, perm: Perm, offset: number, val: number) => void;

/** Permission bits of one capability type, indexed by offset inside the capability. */
export class Perm {
  readonly virt: Uint8Array;
  readonly write: Uint8Array;
  constructor(
    size: number,
    readonly readFn: ReadFn | null,
    readonly writeFn: WriteFn | null,
  ) {
    const n = (size + 3) & ~3;
    this.virt = new Uint8Array(n);
    this.write = new Uint8Array(n);
  }
  set(off: number, size: 1 | 2 | 4, virt: number, write: number): this {
    for (let i = 0; i < size; i++) {
      this.virt[off + i] = (virt >>> (8 * i)) & 0xff;
      this.write[off + i] = (write >>> (8 * i)) & 0xff;
    }
    return this;
  }
}

export const ALL = 0xffffffff;

export function getLe(b: Uint8Array, off: number, count: number): number {
  let v = 0;
  for (let i = count - 1; i >= 0; i--) v = v * 256 + (b[off + i] ?? 0);
  return v >>> 0;
}

export function setLe(b: Uint8Array, off: number, count: number, v: number): void {
  for (let i = 0; i < count; i++) b[off + i] = (v >>> (8 * i)) & 0xff;
}

function fullMask(count: number): number {
  return count === 4 ? ALL : (1 << (8 * count)) - 1;
}

export function physRead(c: ConfigVirt, pos: number, count: number): number {
  return c.fn.configRead(pos, count as 1 | 2 | 4) >>> 0;
}

export function physWrite(c: ConfigVirt, pos: number, count: number, v: number): void {
  c.fn.configWrite(pos, count as 1 | 2 | 4, v >>> 0);
}

/** vfio_default_config_read: shadow for virtual bits, hardware for the rest. */
const defaultRead: ReadFn = (c, pos, count, perm, offset) => {
  let val = getLe(c.vconfig, pos, count);
  const virt = getLe(perm.virt, offset, count);
  if (virt !== fullMask(count)) {
    const phys = physRead(c, pos, count);
    val = ((phys & ~virt) | (val & virt)) >>> 0;
  }
  return val;
};

/** vfio_default_config_write: writable virtual bits to the shadow, the others to hardware. */
const defaultWrite: WriteFn = (c, pos, count, perm, offset, val) => {
  const write = getLe(perm.write, offset, count);
  if (write === 0) return;
  const virt = getLe(perm.virt, offset, count);
  const wv = (write & virt) >>> 0;
  if (wv !== 0) {
    const shadow = getLe(c.vconfig, pos, count);
    setLe(c.vconfig, pos, count, ((shadow & ~wv) | (val & wv)) >>> 0);
  }
  const wp = (write & ~virt) >>> 0;
  if (wp !== 0) {
    const phys = physRead(c, pos, count);
    physWrite(c, pos, count, ((phys & ~wp) | (val & wp)) >>> 0);
  }
};

/** vfio_direct_config_read: hardware, but capability ids and next pointers from the shadow. */
const directRead: ReadFn = (c, pos, count, _perm, offset) => {
  let val = physRead(c, pos, count);
  if (pos >= PCI_CFG_SPACE_SIZE) {
    if (offset < 4) val = getLe(c.vconfig, pos, count);
  } else if (pos >= PCI_STD_HEADER_SIZEOF) {
    if (offset === PCI_CAP_LIST_ID && count > 1) {
      // ID and next come from the shadow, anything after them from hardware.
      val = ((val & ~0xffff) | getLe(c.vconfig, pos, 2)) >>> 0;
    } else if (offset === PCI_CAP_LIST_NEXT) {
      val = ((val & ~0xff) | c.vconfig[pos]!) >>> 0;
    }
  }
  return val;
};

const rawRead: ReadFn = (c, pos, count) => physRead(c, pos, count);
const rawWrite: WriteFn = (c, pos, count, _perm, _offset, val) => physWrite(c, pos, count, val);

function isBar(offset: number): boolean {
  return (
    (offset >= PCI_BASE_ADDRESS_0 && offset < PCI_BASE_ADDRESS_0 + 4 * PCI_STD_NUM_BARS) ||
    (offset >= PCI_ROM_ADDRESS && offset < PCI_ROM_ADDRESS + 4)
  );
}

const basicRead: ReadFn = (c, pos, count, perm, offset) => {
  if (isBar(offset)) c.barFixup();
  let val = defaultRead(c, pos, count, perm, offset);
  // A VF has no Memory Space Enable in hardware; show the one the user wrote.
  if (offset === PCI_COMMAND && c.fn.isVf) {
    val = (val | (getLe(c.vconfig, PCI_COMMAND, 2) & PCI_COMMAND_MEMORY)) >>> 0;
  }
  return val;
};

const basicWrite: WriteFn = (c, pos, count, perm, offset, val) => {
  if (offset === PCI_COMMAND) {
    const phys = physRead(c, PCI_COMMAND, 2);
    const virtCmd = getLe(c.vconfig, PCI_COMMAND, 2);
    const newMem = (val & PCI_COMMAND_MEMORY) !== 0;
    const virtMem = (virtCmd & PCI_COMMAND_MEMORY) !== 0;
    const physMem = (phys & PCI_COMMAND_MEMORY) !== 0;
    const newIo = (val & PCI_COMMAND_IO) !== 0;
    const virtIo = (virtCmd & PCI_COMMAND_IO) !== 0;
    const physIo = (phys & PCI_COMMAND_IO) !== 0;
    // Enabling decoding the user believes enabled while the hardware has it off means the
    // function was reset behind vfio's back: put the BARs back first.
    if ((newMem && virtMem && !physMem && !c.fn.isVf) || (newIo && virtIo && !physIo) || c.needBarRestore()) {
      c.barRestore();
    }
  }
  defaultWrite(c, pos, count, perm, offset, val);
  if (offset === PCI_COMMAND) {
    const mask = PCI_COMMAND_MEMORY | PCI_COMMAND_IO;
    const v = getLe(c.vconfig, PCI_COMMAND, 2);
    setLe(c.vconfig, PCI_COMMAND, 2, (v & ~mask) | (val & mask));
  }
  if (isBar(offset)) c.bardirty = true;
};

const msiWrite: WriteFn = (c, pos, count, perm, offset, val) => {
  defaultWrite(c, pos, count, perm, offset, val);
  if (offset <= PCI_MSI_FLAGS && offset + count >= PCI_MSI_FLAGS) {
    const start = c.capStart(pos);
    let flags = getLe(c.vconfig, start + PCI_MSI_FLAGS, 2);
    // MSI is only ever enabled through SET_IRQS.
    if (!c.host.msiEnabled) flags &= ~PCI_MSI_FLAGS_ENABLE;
    if ((flags & PCI_MSI_FLAGS_QSIZE) >> 4 > c.host.msiQmax) {
      flags = (flags & ~PCI_MSI_FLAGS_QSIZE) | (c.host.msiQmax << 4);
    }
    setLe(c.vconfig, start + PCI_MSI_FLAGS, 2, flags);
    physWrite(c, start + PCI_MSI_FLAGS, 2, flags);
  }
};

const expWrite: WriteFn = (c, pos, count, perm, offset, val) => {
  const start = pos - offset;
  const ctrlAt = start + PCI_EXP_DEVCTL;
  const readrqBefore = getLe(c.vconfig, ctrlAt, 2) & PCI_EXP_DEVCTL_READRQ;
  defaultWrite(c, pos, count, perm, offset, val);
  const ctrl = getLe(c.vconfig, ctrlAt, 2);
  if (ctrl & PCI_EXP_DEVCTL_BCR_FLR) {
    setLe(c.vconfig, ctrlAt, 2, ctrl & ~PCI_EXP_DEVCTL_BCR_FLR);
    if (physRead(c, start + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR) c.host.resetFunction();
  }
  const readrq = getLe(c.vconfig, ctrlAt, 2) & PCI_EXP_DEVCTL_READRQ;
  if (readrq !== readrqBefore) {
    // The physical MRRS follows the user's choice but never drops below the MPS.
    const hwCtl = physRead(c, ctrlAt, 2);
    const mps = 128 << ((hwCtl & PCI_EXP_DEVCTL_PAYLOAD) >> 5);
    const rq = Math.max(128 << (readrq >> 12), mps);
    if (rq <= 4096) {
      const enc = (31 - Math.clz32(rq) - 7) << 12;
      physWrite(c, ctrlAt, 2, (hwCtl & ~PCI_EXP_DEVCTL_READRQ) | enc);
    }
  }
};

export const BASIC_PERM = new Perm(PCI_STD_HEADER_SIZEOF, basicRead, basicWrite)
  .set(PCI_VENDOR_ID, 2, 0xffff, 0)
  .set(PCI_DEVICE_ID, 2, 0xffff, 0)
  .set(PCI_COMMAND, 2, PCI_COMMAND_INTX_DISABLE, 0xffff)
  .set(PCI_STATUS, 2, PCI_STATUS_CAP_LIST, 0)
  .set(PCI_CACHE_LINE_SIZE, 1, 0, 0xff)
  .set(PCI_LATENCY_TIMER, 1, 0, 0xff)
  .set(PCI_BIST, 1, 0, 0xff)
  .set(PCI_ROM_ADDRESS, 4, ALL, ALL)
  .set(PCI_CAPABILITY_LIST, 1, 0xff, 0)
  .set(PCI_INTERRUPT_LINE, 1, 0xff, 0xff)
  .set(PCI_INTERRUPT_PIN, 1, 0xff, 0);
for (let i = 0; i < PCI_STD_NUM_BARS; i++) BASIC_PERM.set(PCI_BASE_ADDRESS_0 + 4 * i, 4, ALL, ALL);

export const EXP_PERM = new Perm(PCI_CAP_EXP_ENDPOINT_SIZEOF_V2, defaultRead, expWrite)
  .set(PCI_CAP_LIST_NEXT, 1, 0xff, 0)
  .set(PCI_EXP_DEVCTL, 2, PCI_EXP_DEVCTL_BCR_FLR | PCI_EXP_DEVCTL_PAYLOAD | PCI_EXP_DEVCTL_READRQ, ~PCI_EXP_DEVCTL_PHANTOM & 0xffff)
  .set(PCI_EXP_DEVCTL2, 2, 0, ~PCI_EXP_DEVCTL2_ARI & 0xffff);

/** Capabilities vfio exposes read-only (every extended capability here). */
export const DIRECT_RO_PERM = new Perm(0, directRead, null);
export const UNASSIGNED_PERM = new Perm(0, rawRead, rawWrite);

export function msiPerm(len: number, flags: number): Perm {
  const p = new Perm(len, defaultRead, msiWrite)
    .set(PCI_CAP_LIST_NEXT, 1, 0xff, 0)
    .set(PCI_MSI_FLAGS, 1, 0xff, 0xff)
    .set(PCI_MSI_ADDRESS_LO, 4, ALL, ALL);
  if (flags & PCI_MSI_FLAGS_64BIT) {
    p.set(PCI_MSI_ADDRESS_HI, 4, ALL, ALL).set(PCI_MSI_DATA_64, 2, 0xffff, 0xffff);
    if (flags & PCI_MSI_FLAGS_MASKBIT) p.set(PCI_MSI_MASK_64, 4, 0, ALL).set(PCI_MSI_PENDING_64, 4, 0, ALL);
  } else {
    // 32-bit layout: data at 0x08, mask/pending at 0x0c/0x10.
    p.set(0x08, 2, 0xffff, 0xffff);
    if (flags & PCI_MSI_FLAGS_MASKBIT) p.set(0x0c, 4, 0, ALL).set(0x10, 4, 0, ALL);
  }
  return p;
}

