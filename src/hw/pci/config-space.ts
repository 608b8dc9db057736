import { KernelError } from '../../uapi/errno.js';
import {
  PCI_CAP_LIST_ID,
  PCI_CAP_LIST_NEXT,
  PCI_CAPABILITY_LIST,
  PCI_CFG_SPACE_EXP_SIZE,
  PCI_CFG_SPACE_SIZE,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_STD_HEADER_SIZEOF,
  extCapHeader,
} from './regs.js';

export type ConfigAccessSize = 1 | 2 | 4;

/**
 * Called after a config write touched [start, start+len). `oldValue` is the little-endian
 * value of that range before the write, so a hook can see transitions (VF Enable 0->1) or
 * undo a write the hardware ignores (NumVFs while VFs exist).
 */
export type ConfigWriteHook = (oldValue: number) => void;

interface Hook {
  start: number;
  len: number;
  fn: ConfigWriteHook;
}

/** Bits that survive a function reset (e.g. Max_Payload_Size in Device Control). */
export interface PreservedField {
  off: number;
  size: ConfigAccessSize;
  mask: number;
}

/**
 * The 4 KiB PCIe configuration space of one function.
 *
 * Every byte has a write mask (bits software may change) and a write-1-to-clear mask
 * (status bits software acknowledges); all other bits are read-only to software. Writes are
 * applied byte by byte through those masks, which is what gives BAR sizing its semantics for
 * free: the address bits below the BAR size are simply not writable.
 *
 * The device side (`get*`/`set*`/`define`) bypasses the masks: it is the hardware updating
 * its own registers (pending bits, self-clearing FLR bit).
 */
export class ConfigSpace {
  static readonly SIZE = PCI_CFG_SPACE_EXP_SIZE;
  /**
   * Bumped by every change to the contents of any config space. Hot paths cache state
   * derived from registers (a function's memory decoding, which for a VF lives in its PF's
   * space) and revalidate it with one comparison instead of re-decoding per access.
   */
  static epoch = 0;

  private readonly bytes = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly view = new DataView(this.bytes.buffer);
  private readonly wmask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly w1cmask = new Uint8Array(PCI_CFG_SPACE_EXP_SIZE);
  private readonly hooks: Hook[] = [];
  private resetImage: Uint8Array | undefined;
  private lastStdCap = 0;
  private nextStdCap = PCI_STD_HEADER_SIZEOF;
  private lastExtCap = 0;
  private nextExtCap = PCI_CFG_SPACE_SIZE;

  /** Software read (little-endian) of 1, 2 or 4 bytes at any offset inside the 4 KiB. */
  read(off: number, size: ConfigAccessSize): number {
    checkAccess(off, size);
    return this.get(off, size);
  }

  /**
   * Software write. Read-only bits keep their value, write-1-to-clear bits clear where the
   * value has a 1, then every hook whose range the write overlaps runs (in registration order).
   */
  write(off: number, size: ConfigAccessSize, value: number): void {
    checkAccess(off, size);
    const end = off + size;
    const touched: Hook[] = [];
    const olds: number[] = [];
    for (const h of this.hooks) {
      if (h.start < end && off < h.start + h.len) {
        touched.push(h);
        olds.push(this.getRange(h.start, h.len));
      }
    }
    for (let i = 0; i < size; i++) {
      const p = off + i;
      const b = (value >>> (8 * i)) & 0xff;
      const wm = this.wmask[p]!;
      let n = (this.bytes[p]! & ~wm) | (b & wm);
      n &= ~(b & this.w1cmask[p]!);
      this.bytes[p] = n;
    }
    ConfigSpace.epoch++;
    for (let i = 0; i < touched.length; i++) touched[i]!.fn(olds[i]!);
  }

  // ---- device side ------------------------------------------------------------------

  get(off: number, size: ConfigAccessSize): number {
    if (size === 1) return this.bytes[off]!;
    if (size === 2) return this.view.getUint16(off, true);
    return this.view.getUint32(off, true);
  }

  set(off: number, size: ConfigAccessSize, value: number): void {
    ConfigSpace.epoch++;
    if (size === 1) this.bytes[off] = value & 0xff;
    else if (size === 2) this.view.setUint16(off, value & 0xffff, true);
    else this.view.setUint32(off, value >>> 0, true);
  }

  /** Sets a register's value and its software-visible masks (defaults: read-only). */
  define(off: number, size: ConfigAccessSize, value: number, rw = 0, w1c = 0): void {
    this.set(off, size, value);
    this.setMasks(off, size, rw, w1c);
  }

  setMasks(off: number, size: ConfigAccessSize, rw: number, w1c = 0): void {
    for (let i = 0; i < size; i++) {
      this.wmask[off + i] = (rw >>> (8 * i)) & 0xff;
      this.w1cmask[off + i] = (w1c >>> (8 * i)) & 0xff;
    }
  }

  /** Software-writable bits of the register (for tests and the host's virtualisation). */
  writableMask(off: number, size: ConfigAccessSize): number {
    let m = 0;
    for (let i = size - 1; i >= 0; i--) m = m * 256 + this.wmask[off + i]!;
    return m;
  }

  onWrite(start: number, len: number, fn: ConfigWriteHook): void {
    if (len < 1 || len > 4) throw new KernelError('EINVAL', 'config hook spans 1..4 bytes');
    this.hooks.push({ start, len, fn });
  }

  /**
   * Appends a standard capability (linked from 0x34, dword aligned, inside the first 256
   * bytes) and returns its offset. Sets the Capabilities List status bit.
   */
  addCapability(id: number, length: number): number {
    const off = this.nextStdCap;
    const len = (length + 3) & ~3;
    if (len < 4 || off + len > PCI_CFG_SPACE_SIZE) {
      throw new KernelError('ENOSPC', `no room for capability 0x${id.toString(16)}`);
    }
    this.define(off + PCI_CAP_LIST_ID, 1, id);
    this.define(off + PCI_CAP_LIST_NEXT, 1, 0);
    if (this.lastStdCap === 0) {
      this.define(PCI_CAPABILITY_LIST, 1, off);
      this.set(PCI_STATUS, 2, this.get(PCI_STATUS, 2) | PCI_STATUS_CAP_LIST);
    } else {
      this.set(this.lastStdCap + PCI_CAP_LIST_NEXT, 1, off);
    }
    this.lastStdCap = off;
    this.nextStdCap = off + len;
    return off;
  }

  /** Appends an extended capability (first at 0x100) and returns its offset. */
  addExtCapability(id: number, version: number, length: number): number {
    const off = this.nextExtCap;
    const len = (length + 3) & ~3;
    if (len < 4 || off + len > PCI_CFG_SPACE_EXP_SIZE) {
      throw new KernelError('ENOSPC', `no room for extended capability 0x${id.toString(16)}`);
    }
    this.define(off, 4, extCapHeader(id, version, 0));
    if (this.lastExtCap !== 0) {
      const prev = this.get(this.lastExtCap, 4);
      this.set(this.lastExtCap, 4, (prev & 0x000fffff) | (off << 20));
    }
    this.lastExtCap = off;
    this.nextExtCap = off + len;
    return off;
  }

  /** Offset of the first standard capability with `id`, or 0 (walks the list like Linux). */
  findCapability(id: number): number {
    if ((this.get(PCI_STATUS, 2) & PCI_STATUS_CAP_LIST) === 0) return 0;
    let pos = this.get(PCI_CAPABILITY_LIST, 1) & ~3;
    for (let ttl = 48; pos >= PCI_STD_HEADER_SIZEOF && ttl > 0; ttl--) {
      if (this.get(pos + PCI_CAP_LIST_ID, 1) === id) return pos;
      pos = this.get(pos + PCI_CAP_LIST_NEXT, 1) & ~3;
    }
    return 0;
  }

  /** Offset of the first extended capability with `id`, or 0. */
  findExtCapability(id: number): number {
    let pos = PCI_CFG_SPACE_SIZE;
    for (let ttl = (PCI_CFG_SPACE_EXP_SIZE - PCI_CFG_SPACE_SIZE) / 8; ttl > 0; ttl--) {
      const hdr = this.get(pos, 4);
      if (hdr === 0) return 0;
      if ((hdr & 0xffff) === id) return pos;
      pos = (hdr >>> 20) & 0xffc;
      if (pos < PCI_CFG_SPACE_SIZE) return 0;
    }
    return 0;
  }

  /** Records the current contents as the power-on / post-reset image. */
  sealResetImage(): void {
    this.resetImage = this.bytes.slice();
  }

  /** Function reset: every register returns to the sealed image except preserved bits. */
  resetToImage(preserve: readonly PreservedField[] = []): void {
    if (!this.resetImage) throw new KernelError('EINVAL', 'config space has no reset image');
    const kept = preserve.map((p) => this.get(p.off, p.size));
    this.bytes.set(this.resetImage);
    ConfigSpace.epoch++;
    preserve.forEach((p, i) => {
      const img = this.get(p.off, p.size);
      this.set(p.off, p.size, (img & ~p.mask) | (kept[i]! & p.mask));
    });
  }

  private getRange(start: number, len: number): number {
    let v = 0;
    for (let i = len - 1; i >= 0; i--) v = v * 256 + this.bytes[start + i]!;
    return v;
  }
}

function checkAccess(off: number, size: number): void {
  if (size !== 1 && size !== 2 && size !== 4) {
    throw new KernelError('EINVAL', `config access size ${size}`);
  }
  if (!Number.isInteger(off) || off < 0 || off + size > PCI_CFG_SPACE_EXP_SIZE) {
    throw new KernelError('EINVAL', `config offset ${off} outside the 4 KiB space`);
  }
}

/** All-ones of an access size: what a read of a missing function or disabled BAR returns. */
export function allOnes(size: 1 | 2 | 4): number {
  return size === 4 ? 0xffffffff : size === 2 ? 0xffff : 0xff;
}
