/**
 * What the migration orchestrator needs from each side. The VM/testbed code (src/vmm/vm.ts,
 * testbed.ts) implements these; the orchestrator (src/vmm/migration/*) only uses them, the
 * VFIO fds, and the stream/transport layers.
 */
import type { Scheduler } from '../../sim/scheduler.js';
import type { SparseMemory } from '../../mem/sparse-memory.js';
import type { DirtyPageVisitor, DirtyRingSet, FinalCollection } from '../../mem/dirty-ring.js';
import type { FdTable, VfioFile } from '../../vfio/fd.js';
import type { UserAddressSpace } from '../../mem/user-space.js';

/** A guest as the VMM sees it: RAM, vCPUs with dirty logging, and CPU-side state. */
export interface MigratableVm {
  readonly ram: SparseMemory;
  /** Guest-physical (= IOVA) address of RAM byte 0. */
  readonly ramBase: number;
  readonly ramBytes: number;
  /** vCPU dirty rings plus the bitmap backup; `ramSlot` is RAM's memory slot id. */
  readonly dirtyRings: DirtyRingSet;
  readonly ramSlot: number;
  /**
   * One pre-copy dirty collection of CPU writes: harvest every ring, hand over the pages the
   * VMM's run loop reaped on DIRTY_RING_FULL exits since the last call, then reset the rings
   * (so page contents are read only after the pages are write-protected again). Visits
   * (slot, page offset); returns the entries visited.
   */
  collectDirty(visit: DirtyPageVisitor): number;
  /**
   * The final collection with the vCPUs paused: rings and reaped pages, then the
   * WITH_BITMAP backup last (returned in `bitmaps`); arms the late-write trap until
   * dirtyRings.disarm().
   */
  finalCollect(visit: DirtyPageVisitor): FinalCollection;
  /** vCPUs running (the guest makes progress when `run` is called). */
  readonly vcpusRunning: boolean;
  pauseVcpus(): void;
  resumeVcpus(): void;
  /** Advances the guest (vCPUs, guest driver, device) by `ns` of simulated time. */
  run(ns: number): void;
  /** Guest state that does not live in RAM or the device (vCPU registers, in this model the
   * guest driver's and workload's JS state), serialised so it can cross processes. */
  saveCpuState(): Uint8Array;
  loadCpuState(data: Uint8Array): void;
}

/** A VF passed through to the VM. */
export interface PassthroughDevice {
  /** Stable name used in the stream (the VF's BDF on the source). */
  readonly name: string;
  readonly fd: number;
  readonly file: VfioFile;
  /** The VMM's guest-facing side of the device, when it keeps config state of its own. */
  readonly io?: DeviceConfigIo;
}

/**
 * Config state the VMM keeps for a device (QEMU's vfio_save_config/vfio_load_config:
 * command register, the emulated MSI capability). Saved after the device stopped and sent as
 * DEV_CONFIG_STATE; loaded on the destination after the device state, before it runs.
 */
export interface DeviceConfigIo {
  saveDeviceConfig(): Uint8Array;
  loadDeviceConfig(data: Uint8Array): void;
}

/** Stream name of the device section that carries MigratableVm.saveCpuState(). */
export const CPU_STATE_SECTION = 'cpu-state';

/** One side of a migration. */
export interface MigrationEndpoint {
  readonly scheduler: Scheduler;
  readonly vm: MigratableVm;
  readonly devices: readonly PassthroughDevice[];
  readonly containerFd: number;
  readonly container: VfioFile;
  readonly process: { readonly fds: FdTable; readonly user: UserAddressSpace };
}
