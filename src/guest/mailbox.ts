/**
 * The VF side of the 128-bit mailbox (qm-hardware.md 2): wait for idle, store the command
 * as two 64-bit writes (the device latches on the last dword), wait for completion, check
 * the status. Polls every 10 us and gives up after 1 ms, as the Linux driver does.
 */
import { KernelError, fail } from '../uapi/errno.js';
import type { Scheduler } from '../sim/scheduler.js';
import type { GuestPciIo } from './io.js';
import { MB_BASE, MB_BUSY, MB_OP_READ, MB_STATUS_MASK, MB_STATUS_SHIFT, QM_BAR } from './regs.js';
import { pollUntil } from './wait.js';

export interface MailboxTiming {
  /** Poll period (default 10 us). */
  periodNs: number;
  /** Give up after (default 1 ms). */
  timeoutNs: number;
}

export const MAILBOX_TIMING: MailboxTiming = { periodNs: 10_000, timeoutNs: 1_000_000 };

export interface MailboxStats {
  commands: number;
  /** Commands refused because the mailbox was still busy (EBUSY). */
  busy: number;
  /** Commands that never completed (ETIMEDOUT). */
  timeouts: number;
  /** Commands the device completed with a non-zero status (EIO). */
  failed: number;
}

export class VfMailbox {
  readonly stats: MailboxStats = { commands: 0, busy: 0, timeouts: 0, failed: 0 };
  /** Status field of the last completed command. */
  lastStatus = 0;

  constructor(
    private readonly io: GuestPciIo,
    private readonly sched: Scheduler,
    private readonly timing: MailboxTiming = MAILBOX_TIMING,
  ) {}

  /** Sends one command; returns the data words 0x304/0x308 after completion. */
  send(cmd: number, op: 0 | 1, queue: number, lo: number, hi: number): [number, number] {
    const io = this.io;
    const idle = () => {
      const w0 = io.read32(QM_BAR, MB_BASE);
      if (w0 === 0xffffffff) fail('ENODEV', 'mailbox reads all-ones: device not responding');
      return (w0 & MB_BUSY) === 0;
    };
    if (!pollUntil(this.sched, idle, this.timing.periodNs, this.timing.timeoutNs)) {
      this.stats.busy++;
      fail('EBUSY', `mailbox still busy before command 0x${cmd.toString(16)}`);
    }
    this.stats.commands++;
    const w0 = ((cmd & 0xff) | MB_BUSY | (op ? MB_OP_READ : 0) | ((queue & 0xffff) << 16)) >>> 0;
    io.write64(QM_BAR, MB_BASE, w0, lo >>> 0);
    io.write64(QM_BAR, MB_BASE + 8, hi >>> 0, 0);
    if (!pollUntil(this.sched, idle, this.timing.periodNs, this.timing.timeoutNs)) {
      this.stats.timeouts++;
      fail('ETIMEDOUT', `mailbox command 0x${cmd.toString(16)} (queue ${queue}) did not complete`);
    }
    const [r0, dataL] = io.read64(QM_BAR, MB_BASE);
    const [dataH] = io.read64(QM_BAR, MB_BASE + 8);
    this.lastStatus = (r0 >>> MB_STATUS_SHIFT) & MB_STATUS_MASK;
    if (this.lastStatus !== 0) {
      this.stats.failed++;
      throw new KernelError('EIO', `mailbox command 0x${cmd.toString(16)} (queue ${queue}) failed with status ${this.lastStatus}`);
    }
    return [dataL >>> 0, dataH >>> 0];
  }

  /** A command whose operand is a DMA address. */
  sendAddr(cmd: number, op: 0 | 1, queue: number, addr: number): [number, number] {
    return this.send(cmd, op, queue, addr % 0x1_0000_0000, Math.floor(addr / 0x1_0000_0000));
  }
}
