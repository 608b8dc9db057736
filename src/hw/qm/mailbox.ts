/**
 * The 128-bit mailbox (qm-hardware.md section 2).
 *
 * Each function has its own 16-byte mailbox window at BAR2+0x300, but one mailbox engine
 * serves the PF and every VF, one command at a time in arrival order.
 *
 * Latch rule [inference]: the hardware wants one atomic 128-bit write; a CPU may deliver it
 * as 4x32-bit or 2x64-bit stores. The command is latched when the write that covers the last
 * byte (0x30F) arrives, so 0x300..0x30C dword stores and 0x300/0x308 qword stores both latch
 * on their final store, never on the first store to 0x300. Stores while this function's
 * command is still busy are dropped (and counted): the driver must poll busy first.
 *
 * Timing: with `mailboxNs` = 0 the command executes synchronously inside the store that
 * latched it, so the driver's first busy poll already sees completion. With `mailboxNs` > 0
 * busy (w0 bit13) stays set while the command waits for and occupies the engine; the
 * command's effects (DMA, state changes) happen when it completes.
 *
 * Reads: 0x300 returns w0 (with the live busy/status bits) | queue<<16, 0x304/0x308 the
 * data words (replaced by the result for commands that return one), 0x30C the reserved word.
 */
import type { Scheduler, TimerHandle } from '../../sim/scheduler.js';
import type { DeviceFaults } from './faults.js';
import * as Regs from './registers.js';

const { MB_BUSY_BIT, MB_CMD_MASK, MB_OP_BIT, MB_STATUS_MASK, MB_STATUS_SHIFT } = Regs;

/** A latched command. */
export interface MailboxCommand {
  cmd: number;
  op: 0 | 1;
  queue: number;
  baseL: number;
  baseH: number;
}

export interface MailboxResult {
  status: number;
  /** Replacement values for 0x304/0x308 (commands that return data). */
  dataL?: number;
  dataH?: number;
}

/** Status-only results by status value, shared: results are read once and never kept. */
const STATUS_RESULTS: readonly MailboxResult[] = Array.from({ length: 16 }, (_, status) => Object.freeze({ status }));

/** The result of a command that returns no data. */
export function statusResult(status: number): MailboxResult {
  return STATUS_RESULTS[status & 0xf]!;
}

export class MailboxRegs {
  /** What software reads and writes: w0|queue<<16, base_l, base_h, rsvd. */
  readonly words = new Uint32Array(4);
  private readonly latchedWords = new Uint32Array(4);
  /** command()'s answer, refilled on every call (the command runs before the next latch). */
  private readonly latched: MailboxCommand = { cmd: 0, op: 0, queue: 0, baseL: 0, baseH: 0 };
  busy = false;
  readonly counters = { latched: 0, droppedWhileBusy: 0, failed: 0 };

  read(i: number): number {
    if (i === 0) {
      const w = this.words[0]! & ~MB_BUSY_BIT;
      return (this.busy ? w | MB_BUSY_BIT : w) >>> 0;
    }
    return this.words[i]!;
  }

  /**
   * Stores `value` under `mask` into dword `i`. Returns true when this store latched a
   * command (the caller then submits it).
   */
  write(i: number, value: number, mask: number): boolean {
    if (this.busy) {
      this.counters.droppedWhileBusy++;
      return false;
    }
    this.words[i] = ((this.words[i]! & ~mask) | (value & mask)) >>> 0;
    if (i === 3 && (mask & 0xff000000) !== 0) {
      this.latchedWords.set(this.words);
      this.busy = true;
      this.counters.latched++;
      return true;
    }
    return false;
  }

  /** The latched command; the object is reused, so it is only valid until the next call. */
  command(): MailboxCommand {
    const w0 = this.latchedWords[0]!;
    const c = this.latched;
    c.cmd = w0 & MB_CMD_MASK;
    c.op = (w0 & MB_OP_BIT) !== 0 ? 1 : 0;
    c.queue = w0 >>> 16;
    c.baseL = this.latchedWords[1]!;
    c.baseH = this.latchedWords[2]!;
    return c;
  }

  complete(r: MailboxResult): void {
    const status = r.status & 0xf;
    this.words[0] = ((this.words[0]! & ~(MB_STATUS_MASK | MB_BUSY_BIT)) | (status << MB_STATUS_SHIFT)) >>> 0;
    if (r.dataL !== undefined) this.words[1] = r.dataL >>> 0;
    if (r.dataH !== undefined) this.words[2] = r.dataH >>> 0;
    if (status !== 0) this.counters.failed++;
    this.busy = false;
  }

  reset(): void {
    this.words.fill(0);
    this.latchedWords.fill(0);
    this.busy = false;
  }
}

/** A function as the mailbox engine sees it. */
export interface MailboxClient {
  readonly mailbox: MailboxRegs;
  /** Per-function hang fault. */
  readonly mailboxHung: boolean;
  /** Executes the latched command and completes the registers. */
  runMailbox(): void;
}

export class MailboxEngine {
  private readonly queue: MailboxClient[] = [];
  private readonly parked = new Set<MailboxClient>();
  private running: MailboxClient | null = null;
  private timer: TimerHandle | null = null;
  executed = 0;

  constructor(
    private readonly scheduler: Scheduler,
    private readonly latencyNs: number,
    private readonly faults: DeviceFaults,
  ) {}

  /** Queues a function whose mailbox just latched a command. */
  submit(client: MailboxClient): void {
    // An idle engine without latency runs the command at once: what pump() would do with a
    // one-entry queue, without queueing (this is every command of a migration arc).
    if (this.running === null && this.queue.length === 0 && this.latencyNs <= 0
      && !this.faults.mailboxHang && !client.mailboxHung) {
      this.executed++;
      client.runMailbox();
      this.pump();
      return;
    }
    this.queue.push(client);
    this.pump();
  }

  /** Forgets a function's queued or running command (reset, VF removal). */
  cancel(client: MailboxClient): void {
    const i = this.queue.indexOf(client);
    if (i >= 0) this.queue.splice(i, 1);
    this.parked.delete(client);
    if (this.running === client) {
      this.timer?.cancel();
      this.timer = null;
      this.running = null;
      this.pump();
    }
  }

  /** A per-function hang was lifted: its parked command rejoins the queue. */
  unpark(client: MailboxClient): void {
    if (this.parked.delete(client)) {
      this.queue.push(client);
      this.pump();
    }
  }

  /** Commands waiting (queued, parked or running). */
  get backlog(): number {
    return this.queue.length + this.parked.size + (this.running ? 1 : 0);
  }

  pump(): void {
    while (this.running === null && !this.faults.mailboxHang && this.queue.length > 0) {
      const c = this.queue.shift()!;
      if (c.mailboxHung) {
        this.parked.add(c);
        continue;
      }
      if (this.latencyNs <= 0) {
        this.executed++;
        c.runMailbox();
        continue;
      }
      this.running = c;
      this.timer = this.scheduler.schedule(this.latencyNs, () => {
        this.timer = null;
        this.running = null;
        if (this.faults.mailboxHang || c.mailboxHung) {
          // Hung mid-flight: the command goes back to the front and waits for the fault to lift.
          if (c.mailboxHung) this.parked.add(c);
          else this.queue.unshift(c);
          return;
        }
        this.executed++;
        c.runMailbox();
        this.pump();
      });
    }
  }
}
