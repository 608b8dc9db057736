/**
 * The driver's own mapping of a VF's registers (`vf_qm->io_base`), with origin 'driver'.
 *
 * The guest owns the VF while it may run, so this mapping exists only for the span of one
 * migration transition (or the resume-side match check, when the guest is not running) and
 * is torn down right after, on success and on failure alike. An access through a torn-down
 * mapping is a driver bug and fails with EIO instead of reaching the device.
 *
 * Polls run on simulated time: between reads the scheduler runs whatever the device has due.
 */
import type { PciFunction } from '../../hw/pci/function.js';
import type { Scheduler } from '../../sim/scheduler.js';
import { fail } from '../../uapi/errno.js';
import { type RegReader, pollMasked } from '../hisi-qm/poll.js';
import {
  MB_POLL_PERIOD_NS, MB_POLL_TIMEOUT_NS, QM_BAR, QM_DB_BAR, QM_MB_BUSY, QM_MB_CMD_DATA_ADDR_H,
  QM_MB_CMD_DATA_ADDR_L, QM_MB_CMD_SEND_BASE, QM_MB_OP_SHIFT, QM_MB_STATUS_MASK, QM_MB_STATUS_SHIFT,
} from './regs.js';

export class VfRegs implements RegReader {
  private live = true;
  /** What mailbox() returns, refilled by every read command (callers use it at once). */
  private readonly mbData = { lo: 0, hi: 0 };

  constructor(private readonly fn: PciFunction, readonly sched: Scheduler) {}

  get mapped(): boolean {
    return this.live;
  }

  private check(): void {
    if (!this.live) fail('EIO', 'VF registers are not mapped');
    if (!this.fn.present) fail('ENODEV', `${this.fn.bdf} is gone`);
  }

  read(off: number): number {
    this.check();
    return this.fn.mmioRead(QM_BAR, off, 4, 'driver') >>> 0;
  }

  /** RegReader: the same as `read`. */
  readReg32(off: number): number {
    return this.read(off);
  }

  write(off: number, v: number): void {
    this.check();
    this.fn.mmioWrite(QM_BAR, off, 4, v >>> 0, 'driver');
  }

  write64(off: number, lo: number, hi: number): void {
    this.check();
    this.fn.mmioWrite64(QM_BAR, off, lo >>> 0, hi >>> 0, 'driver');
  }

  /** A 64-bit store to the doorbell BAR (SQ/CQ doorbells under isolation). */
  dbWrite64(off: number, lo: number, hi: number): void {
    this.check();
    this.fn.mmioWrite64(QM_DB_BAR, off, lo >>> 0, hi >>> 0, 'driver');
  }

  unmap(): void {
    this.live = false;
  }

  /**
   * readl_relaxed_poll_timeout of `(reg & mask) === want` with the mailbox timing (10 us
   * period, 1 ms timeout); a condition that already holds costs one register read.
   */
  pollMasked(off: number, mask: number, want: number): number | null {
    return pollMasked(this.sched, this, off, mask, want, MB_POLL_PERIOD_NS, MB_POLL_TIMEOUT_NS);
  }

  /** hisi_qm_wait_mb_ready: true once the mailbox busy bit is clear. */
  waitMailboxReady(): boolean {
    return this.pollMasked(QM_MB_CMD_SEND_BASE, QM_MB_BUSY, 0) !== null;
  }

  /**
   * One VF mailbox command (qm-hardware.md section 2): wait idle (EBUSY), one 16-byte store as
   * two 64-bit writes, wait for completion (ETIMEDOUT), non-zero status -> EIO. A read (op 1)
   * returns the data words the hardware left at 0x304/0x308, in an object the next command
   * overwrites. After a write (op 0) there is nothing to read back: the words are not read
   * (two register reads saved per command) and the object holds 0.
   */
  mailbox(cmd: number, queue: number, lo: number, hi: number, op: 0 | 1): { lo: number; hi: number } {
    if (!this.waitMailboxReady()) fail('EBUSY', 'QM mailbox is busy to start');
    const w0 = (cmd | (op << QM_MB_OP_SHIFT) | QM_MB_BUSY | (queue << 16)) >>> 0;
    this.write64(QM_MB_CMD_SEND_BASE, w0, lo);
    this.write64(QM_MB_CMD_DATA_ADDR_H, hi, 0);
    const done = this.pollMasked(QM_MB_CMD_SEND_BASE, QM_MB_BUSY, 0);
    if (done === null) fail('ETIMEDOUT', 'QM mailbox operation timeout');
    if (((done >>> QM_MB_STATUS_SHIFT) & QM_MB_STATUS_MASK) !== 0) {
      fail('EIO', `QM mailbox command 0x${cmd.toString(16)} failed`);
    }
    const data = this.mbData;
    if (op === 1) {
      data.lo = this.read(QM_MB_CMD_DATA_ADDR_L);
      data.hi = this.read(QM_MB_CMD_DATA_ADDR_H);
    } else {
      data.lo = 0;
      data.hi = 0;
    }
    return data;
  }
}
