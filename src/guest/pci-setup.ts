/**
 * The generic PCI work a guest kernel does for the driver: walking the capability lists,
 * enabling memory decoding and bus mastering, programming MSI, and a Function Level Reset
 * through the PCI Express capability. Only config-space accesses through GuestPciIo.
 */
import { fail } from '../uapi/errno.js';
import {
  PCI_CAPABILITY_LIST, PCI_CAP_ID_EXP, PCI_CAP_ID_MSI, PCI_COMMAND, PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY, PCI_EXP_DEVCAP, PCI_EXP_DEVCAP_FLR, PCI_EXP_DEVCTL, PCI_EXP_DEVCTL_BCR_FLR,
  PCI_MSI_ADDRESS_HI, PCI_MSI_ADDRESS_LO, PCI_MSI_DATA_64, PCI_MSI_FLAGS, PCI_MSI_FLAGS_64BIT,
  PCI_MSI_FLAGS_ENABLE, PCI_MSI_FLAGS_MASKBIT, PCI_MSI_FLAGS_QMASK, PCI_MSI_FLAGS_QSIZE,
  PCI_MSI_MASK_64, PCI_STATUS, PCI_STATUS_CAP_LIST,
} from '../hw/pci/regs.js';
import type { GuestPciIo } from './io.js';

/** Offset of standard capability `id`, or 0. Bounded walk (48 entries), so a loop cannot hang. */
export function findCapability(io: Pick<GuestPciIo, 'cfgRead'>, id: number): number {
  if ((io.cfgRead(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) === 0) return 0;
  let off = io.cfgRead(PCI_CAPABILITY_LIST, 1) & 0xfc;
  for (let n = 0; off >= 0x40 && n < 48; n++) {
    if (io.cfgRead(off, 1) === id) return off;
    off = io.cfgRead(off + 1, 1) & 0xfc;
  }
  return 0;
}

/** Offset of extended capability `id` (walk from 0x100), or 0. */
export function findExtCapability(io: Pick<GuestPciIo, 'cfgRead'>, id: number): number {
  let off = 0x100;
  for (let n = 0; off >= 0x100 && n < 960; n++) {
    const h = io.cfgRead(off, 4);
    if (h === 0 || h === 0xffffffff) return 0;
    if ((h & 0xffff) === id) return off;
    off = (h >>> 20) & 0xffc;
  }
  return 0;
}

export function setCommandBits(io: GuestPciIo, bits: number, on: boolean): void {
  const cmd = io.cfgRead(PCI_COMMAND, 2);
  io.cfgWrite(PCI_COMMAND, 2, on ? cmd | bits : cmd & ~bits);
}

export function enableMemory(io: GuestPciIo): void {
  setCommandBits(io, PCI_COMMAND_MEMORY, true);
}

export function setBusMaster(io: GuestPciIo, on: boolean): void {
  setCommandBits(io, PCI_COMMAND_MASTER, on);
}

export function busMasterEnabled(io: GuestPciIo): boolean {
  return (io.cfgRead(PCI_COMMAND, 2) & PCI_COMMAND_MASTER) !== 0;
}

/** log2 of the vector count rounded up to a power of two (the MME encoding). */
function mmeFor(vectors: number): number {
  let l = 0;
  while (1 << l < vectors) l++;
  return l;
}

/**
 * Programs the MSI capability for `vectors` messages: address, data (vector n writes
 * data | n, so the data is aligned to the allocation), all vectors unmasked, Multiple
 * Message Enable, then MSI Enable. ENODEV without MSI, ENOSPC when the function cannot
 * send that many messages.
 */
export function enableMsi(io: GuestPciIo, vectors: number, address: number, data: number): void {
  const cap = findCapability(io, PCI_CAP_ID_MSI);
  if (cap === 0) fail('ENODEV', 'function has no MSI capability');
  const flags = io.cfgRead(cap + PCI_MSI_FLAGS, 2);
  const mme = mmeFor(vectors);
  const mmc = (flags & PCI_MSI_FLAGS_QMASK) >>> 1;
  if (mme > mmc) fail('ENOSPC', `need ${vectors} MSI vectors, function offers ${1 << mmc}`);
  const is64 = (flags & PCI_MSI_FLAGS_64BIT) !== 0;
  if (!is64) fail('ENODEV', 'MSI capability without 64-bit addressing');
  io.cfgWrite(cap + PCI_MSI_FLAGS, 2, flags & ~PCI_MSI_FLAGS_ENABLE);
  io.cfgWrite(cap + PCI_MSI_ADDRESS_LO, 4, address % 0x1_0000_0000);
  io.cfgWrite(cap + PCI_MSI_ADDRESS_HI, 4, Math.floor(address / 0x1_0000_0000));
  io.cfgWrite(cap + PCI_MSI_DATA_64, 2, (data & ~((1 << mme) - 1)) & 0xffff);
  if (flags & PCI_MSI_FLAGS_MASKBIT) io.cfgWrite(cap + PCI_MSI_MASK_64, 4, 0);
  const ctrl = (flags & ~PCI_MSI_FLAGS_QSIZE) | (mme << 4) | PCI_MSI_FLAGS_ENABLE;
  io.cfgWrite(cap + PCI_MSI_FLAGS, 2, ctrl);
}

export function disableMsi(io: GuestPciIo): void {
  const cap = findCapability(io, PCI_CAP_ID_MSI);
  if (cap === 0) return;
  const flags = io.cfgRead(cap + PCI_MSI_FLAGS, 2);
  io.cfgWrite(cap + PCI_MSI_FLAGS, 2, flags & ~(PCI_MSI_FLAGS_ENABLE | PCI_MSI_FLAGS_QSIZE));
}

export function msiEnabled(io: GuestPciIo): boolean {
  const cap = findCapability(io, PCI_CAP_ID_MSI);
  return cap !== 0 && (io.cfgRead(cap + PCI_MSI_FLAGS, 2) & PCI_MSI_FLAGS_ENABLE) !== 0;
}

/** Initiate Function Level Reset (PCIe Device Control bit 15). ENOTTY if FLR is not offered. */
export function initiateFlr(io: GuestPciIo): void {
  const cap = findCapability(io, PCI_CAP_ID_EXP);
  if (cap === 0 || (io.cfgRead(cap + PCI_EXP_DEVCAP, 4) & PCI_EXP_DEVCAP_FLR) === 0) {
    fail('ENOTTY', 'function does not support FLR');
  }
  const ctl = io.cfgRead(cap + PCI_EXP_DEVCTL, 2);
  io.cfgWrite(cap + PCI_EXP_DEVCTL, 2, ctl | PCI_EXP_DEVCTL_BCR_FLR);
}
