/**
 * What each side reports about a migration. Plain JSON-serialisable data: the destination's
 * report crosses the return path (possibly between processes) and the CLI prints both.
 *
 * Times: `*Ns` fields are simulated nanoseconds (the model's Scheduler clock of the side
 * that measured them), `*WallUs` fields are wall-clock microseconds of this simulator run.
 */
import type { MigrationFailure } from './errors.js';

/** One span of the timeline. */
export interface PhaseRecord {
  name: 'setup' | 'precopy' | 'stop' | 'stop-copy' | 'transfer' | 'receive' | 'load' | 'switchover' | 'cleanup' | 'recover';
  side: 'source' | 'destination';
  /** Simulated start/end on the measuring side's clock. */
  startNs: number;
  endNs: number;
  wallUs: number;
}

/** One pre-copy pass (index 0 = the bulk pass over all of RAM). */
export interface IterationRecord {
  index: number;
  /** Pages sent in this pass (zero pages the destination already has are skipped). */
  pages: number;
  zeroPages: number;
  /** Stream bytes of this pass (RAM sections and device pre-copy data). */
  bytes: number;
  deviceBytes: number;
  /** Dirty pages found by the sync after this pass. */
  dirtyAfter: number;
  /** Of which reported by the device side (DMA logging or type1). */
  deviceDirtyAfter: number;
  startNs: number;
  endNs: number;
  wallUs: number;
}

export interface FinalPassRecord {
  pages: number;
  zeroPages: number;
  bytes: number;
  ringEntries: number;
  devicePages: number;
  backupPages: number;
  /** Device stop-copy bytes (all devices). */
  deviceBytes: number;
}

export interface DowntimeRecord {
  /** Source: vCPU stop to the last byte handed to the link (device stop, final sync, sends). */
  sourceNs: number;
  /** Modelled link time of the bytes sent while the guest was stopped. */
  transferNs: number;
  /** Destination: end of stream to RUNNING (load, config, CPU state, start). */
  destinationNs: number;
  totalNs: number;
  /** Wall clock of the source's stopped phase and of the destination's switchover. */
  sourceWallUs: number;
  destinationWallUs: number;
  /**
   * Of those, wall clock inside the devices' migration ioctls and data fd reads/writes (the
   * vendor driver and the simulated accelerator doing their part of the stop and the load).
   */
  sourceDeviceWallUs?: number;
  destinationDeviceWallUs?: number;
  /** Process CPU time (user + system, all threads) of the stopped phase on the source. */
  sourceCpuUs?: number;
}

export interface VfStateCheck {
  name: string;
  ok: boolean;
  /** Where the destination's view came from. */
  source: 'live-registers' | 'driver-migf' | 'unavailable';
  /** Fields that differ, "field: source vs destination". */
  mismatches: string[];
  note: string;
}

export interface DestinationReport {
  ok: boolean;
  failure?: MigrationFailure;
  /** The guest's vCPUs were resumed on this side. */
  started: boolean;
  streamBytes: number;
  sections: number;
  ramPages: number;
  zeroPages: number;
  deviceBytes: number;
  /** sha256 of guest RAM after every page was applied, before the guest ran. */
  ramHash: string | null;
  devices: { name: string; protocol: string; bytes: number; check: VfStateCheck | null }[];
  cpuStateBytes: number;
  configBytes: number;
  /** Destination phases (receive, load, switchover). */
  phases: PhaseRecord[];
  /** End of stream to RUNNING, simulated and wall. */
  switchoverNs: number;
  switchoverWallUs: number;
  /** Of switchoverWallUs, the devices' load and start ioctls. */
  switchoverDeviceWallUs?: number;
  /** Process CPU time (user + system, all threads) of the switchover. */
  switchoverCpuUs?: number;
  /** What the destination did when it gave up. */
  teardown: string[];
}

export interface SourceReport {
  ok: boolean;
  failure?: MigrationFailure;
  /** What the source did to keep running after a failure. */
  recovery: string[];
  /** Problems tearing down the source after a successful switchover (the guest is not affected). */
  cleanup: string[];
  /**
   * The guest runs on the source again (after a failure) or on the destination (success;
   * with handover 'unconfirmed' as far as the source can tell).
   */
  guestRunsOn: 'source' | 'destination' | 'nowhere';
  /**
   * How the switchover ended (null: it was not reached, or the migration failed):
   *  confirmed    the destination reported that it started the guest;
   *  unconfirmed  the destination took the whole stream (its reader acknowledged the end) but
   *               its result never arrived: it owns the guest from then on, so the source
   *               stays stopped and does not resume on its own (the result may have been lost
   *               after the destination started). ok is true: the guest left this host.
   */
  handover: 'confirmed' | 'unconfirmed' | null;
  /** Why the handover is unconfirmed (the return path's error or end), else absent. */
  handoverNote?: string;
  protocol: 'v2' | 'v1' | null;
  dirtyMode: 'dma-logging' | 'type1' | null;
  dirtyNote: string;
  precopy: boolean;
  converged: boolean;
  iterations: IterationRecord[];
  final: FinalPassRecord | null;
  downtime: DowntimeRecord | null;
  /** Migration start to the destination running (or to the failure), simulated. */
  totalNs: number;
  totalWallUs: number;
  /**
   * Of totalWallUs, the wall clock spent simulating the guest while it runs during pre-copy
   * (its jobs, the device processing them, its page stores): work a real guest does on its
   * own CPUs and the real device in hardware, beside the migration rather than in it.
   */
  guestWallUs?: number;
  /** Process CPU time (user + system, all threads) from start to end of the migration. */
  totalCpuUs?: number;
  ramBytes: number;
  ramPagesSent: number;
  ramBytesSent: number;
  deviceBytes: number;
  streamBytes: number;
  cpuStateBytes: number;
  configBytes: number;
  /** sha256 of source RAM after the final dirty collection. */
  ramHash: string | null;
  /** Guest RAM writes seen after the final collection (each one a lost update). */
  lateWrites: number;
  /** Per device: the bytes of its migration data as sent (verification compares them). */
  devices: { name: string; protocol: string; precopyBytes: number; stopCopyBytes: number }[];
  phases: PhaseRecord[];
  bandwidthBytesPerSec: number;
  downtimeLimitNs: number;
  destination: DestinationReport | null;
}
