import { defineMemBar64, readBarAddress64, resizeMemBar64 } from './bars.js';
import type { ConfigSpace } from './config-space.js';
import {
  PCI_EXT_CAP_ID_SRIOV,
  PCI_EXT_CAP_SRIOV_SIZEOF,
  PCI_SRIOV_BAR,
  PCI_SRIOV_CAP,
  PCI_SRIOV_CTRL,
  PCI_SRIOV_CTRL_ARI,
  PCI_SRIOV_CTRL_MSE,
  PCI_SRIOV_CTRL_VFE,
  PCI_SRIOV_FUNC_LINK,
  PCI_SRIOV_INITIAL_VF,
  PCI_SRIOV_NUM_BARS,
  PCI_SRIOV_NUM_VF,
  PCI_SRIOV_STATUS,
  PCI_SRIOV_SUP_PGSIZE,
  PCI_SRIOV_SYS_PGSIZE,
  PCI_SRIOV_TOTAL_VF,
  PCI_SRIOV_VF_DID,
  PCI_SRIOV_VF_OFFSET,
  PCI_SRIOV_VF_STRIDE,
  PCI_SRIOV_VFM,
} from './regs.js';

export interface SriovParams {
  totalVfs: number;
  vfOffset: number;
  vfStride: number;
  vfDeviceId: number;
  /** Per-VF BAR sizes by index (0 = absent); 64-bit memory BARs at 0/2/4. */
  vfBarSizes: readonly number[];
}

export interface SriovEvents {
  /** VF Enable 0->1 with NumVFs = n (n <= TotalVFs). Return false to refuse (enable stays 0). */
  enable(numVfs: number): boolean;
  /** VF Enable 1->0. */
  disable(): void;
}

/**
 * Supported Page Sizes: 4K, 8K, 64K, 256K, 1M, 4M (bit n = 4 KiB << n), the set most SR-IOV
 * devices report; Linux programs the host page size (4K or 64K on arm64).
 */
export const SRIOV_SUPPORTED_PAGE_SIZES = 0x553;

/**
 * SR-IOV extended capability of a PF.
 *
 * - NumVFs is writable only while VF Enable is clear; writes while VFs exist are ignored.
 * - Setting VF Enable with NumVFs > TotalVFs is refused: VF Enable stays 0 and no VF is
 *   created (the spec leaves this undefined; refusing keeps state consistent and visible).
 *   `rejectedEnables` counts refusals.
 * - System Page Size accepts exactly one supported bit, and only while VF Enable is clear;
 *   other writes are ignored. VF BARs are at least one system page (SR-IOV 3.3.13), so the
 *   VF BAR sizing masks follow the page size.
 * - VF Migration is not supported (capability bit 0), so its control/status bits are zero.
 */
export class SriovCapability {
  readonly offset: number;
  readonly totalVfs: number;
  readonly vfOffset: number;
  readonly vfStride: number;
  readonly vfDeviceId: number;
  rejectedEnables = 0;
  private readonly baseBarSizes: number[];

  constructor(
    private readonly cfg: ConfigSpace,
    params: SriovParams,
    private readonly events: SriovEvents,
  ) {
    this.totalVfs = params.totalVfs;
    this.vfOffset = params.vfOffset;
    this.vfStride = params.vfStride;
    this.vfDeviceId = params.vfDeviceId;
    this.baseBarSizes = [];
    for (let i = 0; i < PCI_SRIOV_NUM_BARS; i++) this.baseBarSizes.push(params.vfBarSizes[i] ?? 0);

    const off = cfg.addExtCapability(PCI_EXT_CAP_ID_SRIOV, 1, PCI_EXT_CAP_SRIOV_SIZEOF);
    this.offset = off;
    cfg.define(off + PCI_SRIOV_CAP, 4, 0);
    cfg.define(off + PCI_SRIOV_CTRL, 2, 0, PCI_SRIOV_CTRL_VFE | PCI_SRIOV_CTRL_MSE | PCI_SRIOV_CTRL_ARI);
    cfg.define(off + PCI_SRIOV_STATUS, 2, 0);
    cfg.define(off + PCI_SRIOV_INITIAL_VF, 2, params.totalVfs);
    cfg.define(off + PCI_SRIOV_TOTAL_VF, 2, params.totalVfs);
    cfg.define(off + PCI_SRIOV_NUM_VF, 2, 0, 0xffff);
    cfg.define(off + PCI_SRIOV_FUNC_LINK, 1, 0);
    cfg.define(off + PCI_SRIOV_VF_OFFSET, 2, params.vfOffset);
    cfg.define(off + PCI_SRIOV_VF_STRIDE, 2, params.vfStride);
    cfg.define(off + PCI_SRIOV_VF_DID, 2, params.vfDeviceId);
    cfg.define(off + PCI_SRIOV_SUP_PGSIZE, 4, SRIOV_SUPPORTED_PAGE_SIZES);
    cfg.define(off + PCI_SRIOV_SYS_PGSIZE, 4, 1, SRIOV_SUPPORTED_PAGE_SIZES);
    for (let i = 0; i < PCI_SRIOV_NUM_BARS; i += 2) {
      const size = this.baseBarSizes[i]!;
      defineMemBar64(cfg, off + PCI_SRIOV_BAR + 4 * i, size === 0 ? 0 : Math.max(size, 4096));
    }
    cfg.define(off + PCI_SRIOV_VFM, 4, 0);

    cfg.onWrite(off + PCI_SRIOV_CTRL, 2, (old) => this.controlWritten(old));
    cfg.onWrite(off + PCI_SRIOV_NUM_VF, 2, (old) => {
      if (this.vfEnabled) cfg.set(off + PCI_SRIOV_NUM_VF, 2, old);
    });
    cfg.onWrite(off + PCI_SRIOV_SYS_PGSIZE, 4, (old) => {
      const v = cfg.get(off + PCI_SRIOV_SYS_PGSIZE, 4);
      const singleBit = v !== 0 && (v & (v - 1)) === 0;
      if (this.vfEnabled || !singleBit) {
        cfg.set(off + PCI_SRIOV_SYS_PGSIZE, 4, old);
        return;
      }
      this.syncBarMasks();
    });
  }

  get numVfs(): number {
    return this.cfg.get(this.offset + PCI_SRIOV_NUM_VF, 2);
  }

  get vfEnabled(): boolean {
    return (this.cfg.get(this.offset + PCI_SRIOV_CTRL, 2) & PCI_SRIOV_CTRL_VFE) !== 0;
  }

  /** VF Memory Space Enable: gates MMIO of every VF. */
  get vfMemoryEnabled(): boolean {
    return (this.cfg.get(this.offset + PCI_SRIOV_CTRL, 2) & PCI_SRIOV_CTRL_MSE) !== 0;
  }

  /** System Page Size in bytes. */
  get systemPageSize(): number {
    const v = this.cfg.get(this.offset + PCI_SRIOV_SYS_PGSIZE, 4);
    return 4096 * 2 ** (31 - Math.clz32(v));
  }

  /** Per-VF size of a VF BAR as currently decoded (rounded up to the system page size). */
  vfBarSize(bar: number): number {
    const size = this.baseBarSizes[bar] ?? 0;
    return size === 0 ? 0 : Math.max(size, this.systemPageSize);
  }

  vfBarSizes(): number[] {
    return this.baseBarSizes.map((_, i) => this.vfBarSize(i));
  }

  /** Address of VF `vfIndex`'s (1-based) BAR: the VF BAR base plus (index-1) apertures. */
  vfBarAddress(vfIndex: number, bar: number): number {
    const size = this.vfBarSize(bar);
    if (size === 0 || (bar & 1) !== 0) return 0;
    return readBarAddress64(this.cfg, this.offset + PCI_SRIOV_BAR + 4 * bar) + (vfIndex - 1) * size;
  }

  /** Routing id of VF `vfIndex` (1-based), per SR-IOV 3.3.10/3.3.11. */
  vfRoutingId(pfRoutingId: number, vfIndex: number): number {
    return pfRoutingId + this.vfOffset + this.vfStride * (vfIndex - 1);
  }

  /** Re-derives the VF BAR sizing masks from the System Page Size (after writes and resets). */
  syncBarMasks(): void {
    for (let i = 0; i < PCI_SRIOV_NUM_BARS; i += 2) {
      const size = this.vfBarSize(i);
      if (size !== 0) resizeMemBar64(this.cfg, this.offset + PCI_SRIOV_BAR + 4 * i, size);
    }
  }

  private controlWritten(old: number): void {
    const ctrlOff = this.offset + PCI_SRIOV_CTRL;
    const now = this.cfg.get(ctrlOff, 2);
    const wasOn = (old & PCI_SRIOV_CTRL_VFE) !== 0;
    const isOn = (now & PCI_SRIOV_CTRL_VFE) !== 0;
    if (!wasOn && isOn) {
      const n = this.numVfs;
      if (n > this.totalVfs || !this.events.enable(n)) {
        this.cfg.set(ctrlOff, 2, now & ~PCI_SRIOV_CTRL_VFE);
        this.rejectedEnables++;
      }
    } else if (wasOn && !isOn) {
      this.events.disable();
    }
  }
}
