/**
 * The PF side of PF<->VF communication (qm-hardware.md section 5, V3+ with MB_COMMAND).
 *
 * PF -> VF (`sendToVf`, `sendToAllVfs`): mailbox SRC with the message `cmd | data<<32`,
 * QM_IFC_INT_CFG = target, QM_IFC_INT_SET_P = 1, then sleep 10 ms at a time until the
 * target's QM_IFC_READY_STATUS bit clears (the VF acked); after 10 sleeps ETIMEDOUT.
 *
 * VF -> PF: the VF's message raises the PF's IFC vector. Like Linux, the handler only
 * queues work (here a Scheduler task); the work reads QM_IFC_INT_SOURCE_P, fetches each
 * pending VF's message with mailbox DST, acknowledges it (W1C on QM_IFC_INT_SOURCE_P and
 * QM_IFC_INT_SOURCE_V |= 1) and acts on it: VF_GET_QOS is answered with PF_SET_QOS carrying
 * the maximum value (the PF programs no shaper, so every function is unlimited); the other
 * VF reports are logged and kept in `received` for whoever waits on them.
 *
 * The PF mailbox is one resource: while a send waits for its ack, incoming work is deferred
 * until the send is over (Linux holds mailbox_lock across that wait).
 */
import { fail, KernelError } from '../../uapi/errno.js';
import type { HisiQmPf } from './qm-pf.js';
import {
  QM_IFC_INT_CFG, QM_IFC_INT_MASK, QM_IFC_INT_SET_P, QM_IFC_INT_SOURCE_P, QM_IFC_INT_SOURCE_V,
  QM_IFC_READY_STATUS, QM_IFC_SEND_ALL_VFS, POLL_PERIOD_NS, QM_MAX_PF_WAIT_COUNT, QM_MB_PING_ALL_VFS,
  QM_QOS_MAX_VAL, QM_WAIT_DST_ACK_NS, QmIfcCmd, QmMbCmd,
} from '../common/qm-regs.js';

export interface VfMessage {
  vf: number;
  cmd: number;
  data: number;
  /** Simulated time the PF fetched it. */
  at: number;
}

const RECEIVED_LOG = 256;

function bitOf(lo: number, hi: number, n: number): boolean {
  return n < 32 ? ((lo >>> n) & 1) === 1 : ((hi >>> (n - 32)) & 1) === 1;
}

export class PfIfc {
  /** Messages fetched from VFs, oldest first (bounded). */
  readonly received: VfMessage[] = [];
  /** Called for every message fetched. */
  onMessage: ((m: VfMessage) => void) | undefined;
  readonly stats = { interrupts: 0, sent: 0, sendTimeouts: 0, fetchFailures: 0 };
  private locked = false;
  private workQueued = false;
  private workDeferred = false;
  private enabled = false;

  constructor(private readonly qm: HisiQmPf) {}

  /** `qm_cmd_init`: clear the PF's own IFC status and unmask the IFC interrupt. */
  enable(): void {
    this.qm.writeReg(QM_IFC_INT_SOURCE_V, 1);
    this.qm.writeReg(QM_IFC_INT_MASK, 0);
    this.enabled = true;
  }

  /** `qm_cmd_uninit`: mask the IFC interrupt. */
  disable(): void {
    this.enabled = false;
    if (this.qm.dev.present) this.qm.writeReg(QM_IFC_INT_MASK, 1);
  }

  /** The IFC vector fired: queue the work (never runs it inside the device's callback). */
  interrupt(): void {
    this.stats.interrupts++;
    this.queueWork();
  }

  private queueWork(delayNs = 0): void {
    if (this.workQueued) return;
    this.workQueued = true;
    this.qm.dev.bus.scheduler.schedule(delayNs, () => {
      this.workQueued = false;
      if (!this.enabled || !this.qm.dev.present) return;
      if (this.locked) {
        this.workDeferred = true;
        return;
      }
      // Someone is inside a short mailbox command: come back after one poll period.
      if (this.qm.mailboxBusy) {
        this.queueWork(POLL_PERIOD_NS);
        return;
      }
      try {
        this.process();
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        this.qm.dev.bus.log.print(this.qm.dev.bdf, `IFC work failed: ${e.message}`);
      }
    });
  }

  /**
   * `qm_cmd_process`: fetches and acknowledges every pending VF message. Returns the
   * messages handled by this call.
   */
  process(): VfMessage[] {
    const qm = this.qm;
    if (!qm.supportsIfc) fail('EOPNOTSUPP', 'no PF<->VF communication on this QM');
    const src = qm.readReg64(QM_IFC_INT_SOURCE_P);
    const out: VfMessage[] = [];
    const vfs = Math.max(qm.vfsNum, qm.dev.numVfs);
    for (let vf = 1; vf <= vfs; vf++) {
      if (!bitOf(src.lo, src.hi, vf)) continue;
      let w;
      try {
        w = qm.mailbox(QmMbCmd.DST, vf, 0, 1);
      } catch (e) {
        if (!(e instanceof KernelError)) throw e;
        this.stats.fetchFailures++;
        qm.dev.bus.log.print(qm.dev.bdf, `failed to get msg from VF(${vf})!`);
        continue;
      }
      qm.writeReg64(QM_IFC_INT_SOURCE_P, vf < 32 ? (1 << vf) >>> 0 : 0, vf < 32 ? 0 : (1 << (vf - 32)) >>> 0);
      qm.writeReg(QM_IFC_INT_SOURCE_V, qm.readReg(QM_IFC_INT_SOURCE_V) | 1);
      const m: VfMessage = { vf, cmd: w.lo, data: w.hi, at: qm.dev.bus.scheduler.now };
      if (this.received.length === RECEIVED_LOG) this.received.shift();
      this.received.push(m);
      out.push(m);
      this.onMessage?.(m);
      this.dispatch(m);
    }
    return out;
  }

  private dispatch(m: VfMessage): void {
    const log = this.qm.dev.bus.log;
    const bdf = this.qm.dev.bdf;
    switch (m.cmd) {
      case QmIfcCmd.VF_PREPARE_FAIL:
        log.print(bdf, `failed to stop VF(${m.vf})!`);
        return;
      case QmIfcCmd.VF_START_FAIL:
        log.print(bdf, `failed to start VF(${m.vf})!`);
        return;
      case QmIfcCmd.VF_PREPARE_DONE:
      case QmIfcCmd.VF_START_DONE:
        return;
      case QmIfcCmd.VF_GET_QOS:
        try {
          this.sendToVf(m.vf, QmIfcCmd.PF_SET_QOS, QM_QOS_MAX_VAL);
        } catch (e) {
          if (!(e instanceof KernelError)) throw e;
          log.print(bdf, `failed to send cmd to VF(${m.vf})!`);
        }
        return;
      default:
        log.print(bdf, `unsupported cmd ${m.cmd} sent by VF(${m.vf})!`);
    }
  }

  private checkVf(vf: number): void {
    if (!Number.isInteger(vf) || vf < 1 || vf > this.qm.dev.numVfs) fail('EINVAL', `no VF ${vf}`);
  }

  /** `qm_ping_single_vf`: message to one VF, waiting for its ack. */
  sendToVf(vf: number, cmd: number, data: number): void {
    this.checkVf(vf);
    this.send(vf, cmd, data, (lo, hi) => bitOf(lo, hi, vf));
  }

  /** `qm_ping_all_vfs`: message to every VF, waiting until all acked. */
  sendToAllVfs(cmd: number, data: number): void {
    const n = this.qm.dev.numVfs;
    if (n === 0) fail('EINVAL', 'no VFs enabled');
    this.send(QM_MB_PING_ALL_VFS, cmd, data, (lo, hi) => {
      for (let vf = 1; vf <= n; vf++) if (bitOf(lo, hi, vf)) return true;
      return false;
    });
  }

  private send(target: number, cmd: number, data: number, waiting: (lo: number, hi: number) => boolean): void {
    const qm = this.qm;
    if (!qm.supportsIfc) fail('EOPNOTSUPP', 'no PF<->VF communication on this QM');
    if (!Number.isInteger(cmd) || cmd < 0 || cmd > 0xffffffff) fail('EINVAL', `IFC command ${cmd}`);
    if (!Number.isInteger(data) || data < 0 || data > 0xffffffff) fail('EINVAL', `IFC data ${data}`);
    if (this.locked) fail('EBUSY', 'PF mailbox in use');
    this.locked = true;
    try {
      qm.mailbox(QmMbCmd.SRC, target, BigInt(cmd) | (BigInt(data) << 32n), 0);
      const fnSel = target === QM_MB_PING_ALL_VFS ? QM_IFC_SEND_ALL_VFS : target;
      qm.writeReg(QM_IFC_INT_CFG, (qm.readReg(QM_IFC_INT_CFG) & ~QM_IFC_SEND_ALL_VFS) | fnSel);
      qm.writeReg(QM_IFC_INT_SET_P, qm.readReg(QM_IFC_INT_SET_P) | 1);
      this.stats.sent++;
      const sched = qm.dev.bus.scheduler;
      for (let cnt = 0; ; cnt++) {
        sched.advance(QM_WAIT_DST_ACK_NS);
        const st = qm.readReg64(QM_IFC_READY_STATUS);
        if (!waiting(st.lo, st.hi)) return;
        if (cnt + 1 > QM_MAX_PF_WAIT_COUNT) {
          this.stats.sendTimeouts++;
          fail('ETIMEDOUT', `failed to get response from VF for command ${cmd}`);
        }
      }
    } finally {
      this.locked = false;
      if (this.workDeferred) {
        this.workDeferred = false;
        this.queueWork();
      }
    }
  }
}
