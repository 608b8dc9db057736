/**
 * One VF bound to hisi-acc-vfio-pci with migration support (`hisi_acc_vf_core_device`): the
 * open-time facts (PF QM state, vf_id, mode), the migration state, the data fds, the match
 * flag, what the debug view shows, and the v2 state machine (hisi-acc-vfio-pci.md section 6)
 * with the core's path walk done here, arc by arc, as the Linux driver does.
 *
 * VF register access: each arc that needs the VF's registers maps them (VfRegs, origin
 * 'driver') on entry and unmaps them when the arc ends, whatever the outcome; RUNNING ->
 * PRE_COPY works from PF registers only. So while the device sits in RUNNING or PRE_COPY
 * (the guest may run) the driver holds no mapping of the VF.
 *
 * Resets (FLR through the fd or config space, a reset of the VF by anyone, a PF reset) put
 * the device back in RUNNING with QM_NOT_READY and disable the data fds. A reset that lands
 * while a transition is running is deferred to its end, as the driver's reset_lock /
 * deferred_reset pair does, so a transition never sees its state change under it.
 */
import { HostPciDevice } from '../../host/pci-device.js';
import { KernelError, fail } from '../../uapi/errno.js';
import {
  VFIO_DEVICE_STATE_PRE_COPY as PRE_COPY,
  VFIO_DEVICE_STATE_RESUMING as RESUMING,
  VFIO_DEVICE_STATE_RUNNING as RUNNING,
  VFIO_DEVICE_STATE_STOP as STOP,
  VFIO_DEVICE_STATE_STOP_COPY as STOP_COPY,
  VFIO_MIGRATION_PRE_COPY,
  VFIO_MIGRATION_STOP_COPY,
} from '../../uapi/vfio.js';
import { migGetNextState } from '../../vfio/mig-fsm.js';
import type { VfioFile } from '../../vfio/fd.js';
import type { VfioPciCoreDevice } from '../../vfio/pci-core/core-device.js';
import { allocBytes } from '../../vfio/pci-core/byte-slab.js';
import { MigrationDataFile, MigrationSaveFile } from '../../vfio/pci-core/mig-file.js';
import { getPfQm } from '../hisi-qm/pf-driver.js';
import type { HisiQmPf } from '../hisi-qm/qm-pf.js';
import {
  ACC_VF_DATA_SIZE, ACC_VF_STATE_DUMP_SIZE, QM_MATCH_SIZE, QM_NOT_READY, QM_READY, type AccVfData,
  decodeAccVfData, encodeAccVfData, readMatchFields,
} from './acc-vf-data.js';
import { HisiAccResumeFile, type MatchChecker } from './mig-files.js';
import { QM_HW_V3, VF_BAR2_FUNCTIONAL_SIZE, VF_BAR2_SIZE } from './regs.js';
import { VfRegs } from './vf-regs.js';
import {
  type VfQmTarget, loadState, matchData, pfQueIsoCfg, pfVfQueues, readState, readVfState,
  restartQueues, saveState, startDevice, stopDevice, vfMailboxQueues,
} from './vf-qm.js';

/** Bound of HisiAccVfDevice.arcs, and how many of the oldest records go when it is hit. */
const ARC_LOG_MAX = 1024;
const ARC_LOG_TRIM = 64;

export interface HisiAccDriverOptions {
  /** Migration uAPI: v2 (MIG_DEVICE_STATE, default) or the RFC's v1 region. */
  protocol?: 'v2' | 'v1';
  /**
   * QM < V3: 'merged' (default) binds for plain pass-through without migration; 'rfc' fails
   * open with ENODEV, as the RFC did. 'rfc' also makes a match failure EINVAL, not EFAULT.
   */
  oldHwPolicy?: 'merged' | 'rfc';
  /** Host page size: with 64 KiB pages the 32 KiB functional half of BAR2 cannot be mapped. */
  hostPageSize?: 4096 | 65536;
  /** V4: move the migration registers into the PF BAR2 (QM_MIG_REGION_SEL) and expose the whole VF BAR2. */
  pfControl?: boolean;
}

export interface ResolvedOptions {
  protocol: 'v2' | 'v1';
  oldHwPolicy: 'merged' | 'rfc';
  hostPageSize: 4096 | 65536;
  pfControl: boolean;
}

export function resolveOptions(o: HisiAccDriverOptions = {}): ResolvedOptions {
  const r: ResolvedOptions = {
    protocol: o.protocol ?? 'v2',
    oldHwPolicy: o.oldHwPolicy ?? 'merged',
    hostPageSize: o.hostPageSize ?? 4096,
    pfControl: o.pfControl ?? false,
  };
  if (r.protocol !== 'v2' && r.protocol !== 'v1') fail('EINVAL', `protocol ${String(r.protocol)}`);
  if (r.oldHwPolicy !== 'merged' && r.oldHwPolicy !== 'rfc') fail('EINVAL', `oldHwPolicy ${String(r.oldHwPolicy)}`);
  if (r.hostPageSize !== 4096 && r.hostPageSize !== 65536) fail('EINVAL', `host page size ${String(r.hostPageSize)}`);
  return r;
}

/** STOP_COPY | PRE_COPY: integrated endpoints without peer-to-peer DMA, so no P2P. */
export const HISI_ACC_MIG_FLAGS = VFIO_MIGRATION_STOP_COPY | VFIO_MIGRATION_PRE_COPY;

/** The last migration data the driver produced or accepted (debugfs migf_data). */
export interface MigfSnapshot {
  data: AccVfData;
  length: number;
  bytes: Uint8Array;
  /** 'save' on the source, 'resume' on the destination. */
  side: 'save' | 'resume';
  time: number;
}

/** Register values last read from the device, for the debug view when it may not read them now. */
export interface RegsSnapshot {
  /** encodeAccVfData of the read state: the first 144 bytes are the dump. */
  bytes: Uint8Array;
  time: number;
}

/** One arc the driver ran (tests compare these with the core's table). */
export interface ArcRecord {
  from: number;
  to: number;
  ok: boolean;
  errno: number;
  start: number;
  end: number;
}

/** The PCI function behind a vfio core device, when it is a host device. */
export function hostDevOf(core: VfioPciCoreDevice): HostPciDevice | undefined {
  const d = core.hostDev;
  return d instanceof HostPciDevice ? d : undefined;
}

/** hisi_acc_get_pf_qm, or EINVAL "HiSi ACC qm driver not loaded". */
export function requirePfQm(core: VfioPciCoreDevice): { dev: HostPciDevice; pf: HisiQmPf } {
  const dev = hostDevOf(core);
  const pf = dev ? getPfQm(dev) : undefined;
  if (!dev || !pf) fail('EINVAL', 'HiSi ACC qm driver not loaded');
  return { dev, pf };
}

export class HisiAccVfDevice implements MatchChecker {
  readonly core: VfioPciCoreDevice;
  readonly opts: ResolvedOptions;
  /** Arcs run since open: the most recent ones, at most ARC_LOG_MAX (tests clear it). */
  readonly arcs: ArcRecord[] = [];
  migState = RUNNING;
  /** hisi_acc_vdev->vf_qm_state: QM_READY until a save, load or reset says otherwise. */
  vfQmState = QM_READY;
  private matched = false;
  /** vf_qm->qp_num: the VF's queue count (from the PF VFT at open, the VF mailbox on resume). */
  qpNum = 0;
  lastMigf: MigfSnapshot | null = null;
  lastRegs: RegsSnapshot | null = null;

  private target: VfQmTarget | null = null;
  private pfControlMode = false;
  private saving: MigrationSaveFile | null = null;
  private savingData: AccVfData | null = null;
  private resuming: HisiAccResumeFile | null = null;
  private regs: VfRegs | null = null;
  private busy = false;
  private deferredReset = false;
  /**
   * PAUSE_QM went to the function and nothing undid it yet. start_device skips a function
   * without a started guest driver, so this is what tells it that it must still undo the pause.
   */
  private paused = false;
  private unsubscribePf: (() => void) | null = null;
  /** Extra reset work of the v1 region (its own state). */
  onResetExtra: (() => void) | null = null;

  constructor(core: VfioPciCoreDevice, opts: ResolvedOptions) {
    this.core = core;
    this.opts = opts;
  }

  get opened(): boolean {
    return this.target !== null;
  }

  get matchDone(): boolean {
    return this.matched;
  }

  /** The migration half of BAR2 is hidden unless the PF controls migration. */
  get hideUpperHalf(): boolean {
    return !this.pfControlMode;
  }

  /** Bytes of BAR2 the user sees. */
  get bar2Visible(): number {
    return this.pfControlMode ? VF_BAR2_SIZE : VF_BAR2_FUNCTIONAL_SIZE;
  }

  get pfControl(): boolean {
    return this.pfControlMode;
  }

  get inTransition(): boolean {
    return this.busy;
  }

  /** True while the driver holds a mapping of the VF registers. */
  get vfRegsMapped(): boolean {
    return this.regs !== null;
  }

  get vfQm(): VfQmTarget {
    return this.target ?? fail('ENODEV', 'device is not open');
  }

  // ---- open / close -----------------------------------------------------------------------

  /** hisi_acc_vf_qm_init. Throws on the EINVAL/ENODEV paths; the core undoes its enable. */
  open(): void {
    const { dev, pf } = requirePfQm(this.core);
    if (pf.ver < QM_HW_V3) fail('ENODEV', 'Migration not supported, hw version');
    const vfId = (dev.vfIndex ?? -1) + 1;
    if (vfId < 1) fail('EINVAL', `${dev.bdf} is not a VF`);
    const target: VfQmTarget = { pf, vfId, devId: dev.device, sched: dev.bus.scheduler };
    let pfControl = false;
    if (this.opts.pfControl && pf.ver > QM_HW_V3) {
      pf.setMigRegionSel(true);
      pfControl = true;
    }
    this.target = target;
    this.pfControlMode = pfControl;
    this.qpNum = pfVfQueues(target)?.num ?? 0;
    this.migState = RUNNING;
    this.vfQmState = QM_READY;
    this.matched = false;
    this.deferredReset = false;
    this.paused = false;
    this.arcs.length = 0;
    const pfFn = dev.physfn?.fn;
    this.unsubscribePf = pfFn ? pfFn.onReset(() => this.onReset()) : null;
  }

  close(): void {
    this.disableFds();
    this.unsubscribePf?.();
    this.unsubscribePf = null;
    this.regs?.unmap();
    this.regs = null;
    this.target = null;
    this.migState = RUNNING;
  }

  // ---- VF register mapping -------------------------------------------------------------

  /** Runs `fn` with the VF registers mapped; the mapping goes away when `fn` ends. */
  withRegs<T>(fn: (regs: VfRegs) => T): T {
    if (this.regs) return fn(this.regs);
    const t = this.vfQm;
    const regs = new VfRegs(this.core.fn, t.sched);
    this.regs = regs;
    try {
      return fn(regs);
    } finally {
      regs.unmap();
      this.regs = null;
    }
  }

  // ---- pieces both protocols use ----------------------------------------------------------

  /** Match data from PF registers only. */
  buildMatch(): AccVfData {
    return matchData(this.vfQm, this.vfQmState);
  }

  /** Stop the function; on failure the queues are restarted so the source keeps running. */
  stopOrRestart(regs: VfRegs): void {
    const t = this.vfQm;
    try {
      stopDevice(t, regs);
    } catch (e) {
      this.restart(regs);
      throw e;
    }
    this.paused = true;
    // What start_device will need to know: is there a started guest driver to resume?
    this.vfQmState = readVfState(regs);
  }

  /**
   * vf_qm_state_save into `d`; returns the stream bytes (40 or 176), also kept for the debug
   * view (one encoding serves the data fd, migf_data and the register snapshot).
   */
  saveInto(regs: VfRegs, d: AccVfData): Uint8Array {
    const len = saveState(this.vfQm, regs, d);
    this.vfQmState = d.vf_qm_state;
    const bytes = encodeAccVfData(d, len, allocBytes(len));
    const now = this.vfQm.sched.now;
    if (len === ACC_VF_DATA_SIZE) this.lastRegs = { bytes, time: now };
    this.lastMigf = { data: d, length: len, bytes, side: 'save', time: now };
    return bytes;
  }

  restart(regs: VfRegs): void {
    restartQueues(this.vfQm, regs, this.qpNum);
    this.paused = false;
  }

  /**
   * hisi_acc_vf_start_device, only for a QM_READY function. QM_VF_STATE is read first: after a
   * load it holds the state the stream carried, on a source it says whether the guest driver
   * is (still) started, so a not-ready condition that has cleared does not leave the source
   * paused.
   */
  start(regs: VfRegs): void {
    this.vfQmState = readVfState(regs);
    if (this.vfQmState === QM_READY) {
      startDevice(this.vfQm, regs, this.qpNum);
      this.paused = false;
      return;
    }
    // No guest state to resume, but a function left paused would never run a job for a guest
    // driver loaded later: the restart doorbells undo PAUSE_QM (and find no contexts to run).
    if (this.paused) this.restart(regs);
  }

  /** Resets the match flag for a new resume. */
  beginResume(): void {
    this.matched = false;
  }

  /**
   * vf_qm_check_match on the first 40 bytes: version, dev_id, qp_num through the VF mailbox,
   * que_iso_cfg against the PF. Any failure is EFAULT (EINVAL with the RFC policy or the v1
   * protocol, as the RFC returned).
   */
  checkMatch(head: Uint8Array): void {
    if (this.matched) return;
    const errno = this.opts.oldHwPolicy === 'rfc' || this.opts.protocol === 'v1' ? 'EINVAL' : 'EFAULT';
    const t = this.vfQm;
    try {
      const d = readMatchFields(head);
      if (d.dev_id !== t.devId) fail('EINVAL', `failed to match VF devices: 0x${d.dev_id.toString(16)}`);
      const q = this.withRegs((regs) => vfMailboxQueues(regs));
      if (q === null) fail('EINVAL', 'failed to get vft qp nums');
      if (q.num !== d.qp_num) fail('EINVAL', `failed to match VF qp num: ${d.qp_num} vs ${q.num}`);
      this.qpNum = q.num;
      const iso = pfQueIsoCfg(t);
      if (d.que_iso_cfg !== iso) fail('EINVAL', `failed to match isolation state: ${d.que_iso_cfg} vs ${iso}`);
    } catch (e) {
      if (e instanceof KernelError) fail(errno, e.message.replace(/^E[A-Z0-9]+: /, ''));
      throw e;
    }
    this.matched = true;
  }

  /** vf_qm_load_data from a received stream of `bytes.length` bytes. */
  loadFrom(regs: VfRegs, bytes: Uint8Array): void {
    const len = bytes.length;
    if (len !== QM_MATCH_SIZE && len < ACC_VF_DATA_SIZE) fail('EINVAL', `${len} bytes of migration data`);
    if (len >= QM_MATCH_SIZE && !this.matched) fail('EINVAL', 'migration data did not pass the match check');
    const { data } = decodeAccVfData(bytes);
    const outcome = loadState(this.vfQm, regs, data, len);
    // Match data alone means the source had no started guest driver: nothing to resume.
    if (outcome === 'loaded') this.vfQmState = data.vf_qm_state;
    else this.vfQmState = QM_NOT_READY;
    this.lastMigf = { data, length: len, bytes, side: 'resume', time: this.vfQm.sched.now };
  }

  /** The live registers (first 144 bytes of a state) read now; only when the guest cannot run. */
  readRegsNow(): Uint8Array {
    const d = this.buildMatch();
    d.vf_qm_state = this.vfQmState;
    this.withRegs((regs) => readState(this.vfQm, regs, d));
    const bytes = encodeAccVfData(d);
    this.lastRegs = { bytes, time: this.vfQm.sched.now };
    return bytes.subarray(0, ACC_VF_STATE_DUMP_SIZE);
  }

  // ---- data fds ---------------------------------------------------------------------------

  disableFds(): void {
    this.saving?.disable();
    this.saving = null;
    this.savingData = null;
    this.resuming?.disable();
    this.resuming = null;
  }

  // ---- reset ------------------------------------------------------------------------------

  /** reset_done of the VF, or a reset of its PF. */
  onReset(): void {
    if (!this.opened) return;
    if (this.busy) {
      this.deferredReset = true;
      return;
    }
    this.applyReset();
  }

  private applyReset(): void {
    this.deferredReset = false;
    this.paused = false; // the reset un-paused the function
    this.vfQmState = QM_NOT_READY;
    this.migState = RUNNING;
    this.matched = false;
    this.disableFds();
    this.onResetExtra?.();
  }

  /** Runs one exclusive piece of work (a transition); resets during it apply at its end. */
  exclusive<T>(fn: () => T): T {
    if (this.busy) fail('EBUSY', 'a migration state change is in progress');
    this.busy = true;
    try {
      return fn();
    } finally {
      this.busy = false;
      if (this.deferredReset) this.applyReset();
    }
  }

  // ---- v2 state machine -------------------------------------------------------------------

  /** VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE SET. */
  setState(target: number): VfioFile | null {
    if (!this.opened) fail('ENODEV', 'device is not open');
    // exclusive() spelled out, so the ioctl makes no closure.
    if (this.busy) fail('EBUSY', 'a migration state change is in progress');
    this.busy = true;
    try {
      return this.walk(target);
    } finally {
      this.busy = false;
      if (this.deferredReset) this.applyReset();
    }
  }

  /** The core's path walk towards `target`, one driver arc at a time. */
  private walk(target: number): VfioFile | null {
    let file: VfioFile | null = null;
    while (this.migState !== target) {
      const next = migGetNextState(HISI_ACC_MIG_FLAGS, this.migState, target);
      const rec: ArcRecord = { from: this.migState, to: next, ok: false, errno: 0, start: this.vfQm.sched.now, end: 0 };
      // At most ARC_LOG_MAX records; the oldest go ARC_LOG_TRIM at a time (a shift per arc
      // moved the whole array every time).
      if (this.arcs.length >= ARC_LOG_MAX) this.arcs.splice(0, ARC_LOG_TRIM);
      this.arcs.push(rec);
      try {
        const f = this.arc(this.migState, next);
        if (f) file = f;
        rec.ok = true;
      } catch (e) {
        if (e instanceof KernelError) rec.errno = e.errno;
        throw e;
      } finally {
        rec.end = this.vfQm.sched.now;
      }
      this.migState = next;
    }
    return file;
  }

  private arc(cur: number, next: number): VfioFile | null {
    if (cur === RUNNING && next === STOP) {
      this.withRegs((regs) => this.stopOrRestart(regs));
      return null;
    }
    if (cur === RUNNING && next === PRE_COPY) {
      const d = this.buildMatch();
      const f = new MigrationSaveFile('precopy');
      f.appendOwned(encodeAccVfData(d, QM_MATCH_SIZE));
      this.saving = f;
      this.savingData = d;
      return f;
    }
    if (cur === PRE_COPY && next === STOP_COPY) {
      const f = this.saving ?? fail('EINVAL', 'no saving file');
      const d = this.savingData ?? fail('EINVAL', 'no match data');
      this.withRegs((regs) => {
        this.stopOrRestart(regs);
        let bytes: Uint8Array;
        try {
          bytes = this.saveInto(regs, d);
        } catch (e) {
          this.restart(regs);
          throw e;
        }
        f.enterStopCopy();
        if (bytes.length === ACC_VF_DATA_SIZE) f.append(bytes.subarray(QM_MATCH_SIZE));
        f.finish();
      });
      return null;
    }
    if (cur === STOP && next === STOP_COPY) {
      const d = this.buildMatch();
      const bytes = this.withRegs((regs) => this.saveInto(regs, d));
      const f = new MigrationSaveFile('stopcopy');
      // saveInto's buffer is shared with the debug snapshots only, which never write to it.
      f.appendOwned(bytes);
      f.finish();
      this.saving = f;
      this.savingData = d;
      return f;
    }
    if ((cur === STOP_COPY && next === STOP) || (cur === PRE_COPY && next === RUNNING)) {
      this.disableFds();
      return null;
    }
    if (cur === STOP && next === RESUMING) {
      this.beginResume();
      const f = new HisiAccResumeFile(this);
      this.resuming = f;
      return f;
    }
    if (cur === RESUMING && next === STOP) {
      const f = this.resuming ?? fail('EINVAL', 'no resuming file');
      // A view, not a copy: the file never rewrites bytes it holds, and it is disabled below.
      const bytes = f.received;
      this.withRegs((regs) => this.loadFrom(regs, bytes));
      this.disableFds();
      return null;
    }
    if (cur === STOP && next === RUNNING) {
      this.withRegs((regs) => this.start(regs));
      return null;
    }
    fail('EINVAL', `no arc ${cur} -> ${next}`);
  }

  /** Data files the driver currently has open (saving and resuming). */
  get dataFiles(): MigrationDataFile[] {
    const out: MigrationDataFile[] = [];
    if (this.saving) out.push(this.saving);
    if (this.resuming) out.push(this.resuming);
    return out;
  }
}
