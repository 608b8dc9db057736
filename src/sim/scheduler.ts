/**
 * The simulator's explicit event loop. Nothing in the device model uses wall time or
 * Node's timers: work is queued here with a delay in simulated nanoseconds and runs only
 * when a caller drives the loop (`runUntilIdle`, `advance`, `runUntil`). With all latencies
 * at 0 (the default) every device action completes on the next `runUntilIdle()`.
 *
 * Ordering is total and deterministic: by due time, then by insertion order.
 */
export type Task = () => void;

export interface TimerHandle {
  cancel(): void;
}

/**
 * The handle `schedule` returns: the event's sequence number and a prototype method, so
 * queueing an event creates no closure. Cancelling an event that already ran does nothing.
 */
class Timer implements TimerHandle {
  constructor(private readonly sched: Scheduler, readonly id: number) {}
  cancel(): void {
    this.sched.cancelEvent(this.id);
  }
}

/**
 * The queue is a binary min-heap kept in three parallel arrays (due time, sequence number,
 * task) ordered by (due, seq): no object per event besides the returned handle, and a
 * cancelled event is its task slot set to null, skipped when it reaches the top.
 */
export class Scheduler {
  private readonly dues: number[] = [];
  private readonly seqs: number[] = [];
  private readonly tasks: (Task | null)[] = [];
  private cancelledInHeap = 0;
  private seq = 0;
  private nowNs = 0;
  /** Tasks executed since creation (useful for progress guards in tests). */
  executed = 0;

  /** Current simulated time in nanoseconds. */
  get now(): number {
    return this.nowNs;
  }

  /** Queues `task` to run `delayNs` after now (0 = as soon as the loop runs). */
  schedule(delayNs: number, task: Task): TimerHandle {
    const id = this.seq++;
    this.push(this.nowNs + (delayNs > 0 ? delayNs : 0), id, task);
    return new Timer(this, id);
  }

  /**
   * Drops the queued event with sequence number `id`; nothing when it already ran. Linear in
   * the queue length: fine for rare cancels (mailbox timeouts), not for one per job.
   */
  cancelEvent(id: number): void {
    const seqs = this.seqs;
    for (let i = 0; i < seqs.length; i++) {
      if (seqs[i] !== id) continue;
      if (this.tasks[i] !== null) {
        this.tasks[i] = null;
        this.cancelledInHeap++;
      }
      return;
    }
  }

  /** Number of queued (not cancelled) tasks. */
  get pending(): number {
    return this.tasks.length - this.cancelledInHeap;
  }

  /** Runs one due-ordered task, moving time forward to it. Returns false when idle. */
  step(): boolean {
    for (;;) {
      if (this.tasks.length === 0) return false;
      const due = this.dues[0]!;
      const task = this.pop();
      if (task === null) continue;
      if (due > this.nowNs) this.nowNs = due;
      this.executed++;
      task();
      return true;
    }
  }

  /**
   * Runs tasks until none is left, time advancing as needed. `maxTasks` bounds runaway
   * self-rescheduling loops; exceeding it throws, since it means the model never settles.
   */
  runUntilIdle(maxTasks = 10_000_000): number {
    let n = 0;
    while (this.step()) {
      if (++n > maxTasks) throw new Error(`scheduler: more than ${maxTasks} tasks without going idle`);
    }
    return n;
  }

  /** Runs every task due within the next `ns` nanoseconds, then sets time to now+ns. */
  advance(ns: number): void {
    const target = this.nowNs + Math.max(0, ns);
    for (;;) {
      this.dropCancelledTop();
      if (this.tasks.length === 0 || this.dues[0]! > target) break;
      this.step();
    }
    this.nowNs = target;
  }

  /** Runs tasks until `cond()` holds or the loop is idle; returns whether `cond()` held. */
  runUntil(cond: () => boolean, maxTasks = 10_000_000): boolean {
    let n = 0;
    while (!cond()) {
      if (!this.step()) return cond();
      if (++n > maxTasks) throw new Error(`scheduler: condition not met after ${maxTasks} tasks`);
    }
    return true;
  }

  private dropCancelledTop(): void {
    while (this.tasks.length !== 0 && this.tasks[0] === null) this.pop();
  }

  private push(due: number, seq: number, task: Task): void {
    const d = this.dues;
    const s = this.seqs;
    const t = this.tasks;
    // sift up with a hole: parents move down until the new event's place is found
    let i = t.length;
    d.push(due);
    s.push(seq);
    t.push(task);
    while (i > 0) {
      const p = (i - 1) >> 1;
      const pd = d[p]!;
      if (pd < due || (pd === due && s[p]! < seq)) break;
      d[i] = pd;
      s[i] = s[p]!;
      t[i] = t[p]!;
      i = p;
    }
    d[i] = due;
    s[i] = seq;
    t[i] = task;
  }

  /** Removes the top event and returns its task (null when it was cancelled). */
  private pop(): Task | null {
    const d = this.dues;
    const s = this.seqs;
    const t = this.tasks;
    const top = t[0]!;
    if (top === null) this.cancelledInHeap--;
    const lastD = d.pop()!;
    const lastS = s.pop()!;
    const lastT = t.pop()!;
    const n = t.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let m = l;
        if (r < n && (d[r]! < d[l]! || (d[r] === d[l] && s[r]! < s[l]!))) m = r;
        const md = d[m]!;
        if (lastD < md || (lastD === md && lastS < s[m]!)) break;
        d[i] = md;
        s[i] = s[m]!;
        t[i] = t[m]!;
        i = m;
      }
      d[i] = lastD;
      s[i] = lastS;
      t[i] = lastT;
    }
    return top;
  }
}

/** Small deterministic PRNG (xorshift128+ folded to 32 bits) for seeded simulations. */
export class Rng {
  private s0: number;
  private s1: number;
  private s2: number;
  private s3: number;
  constructor(seed: number) {
    // splitmix32 spreads a small seed over the state words
    let x = seed >>> 0;
    const next = () => {
      x = (x + 0x9e3779b9) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.s0 = next(); this.s1 = next(); this.s2 = next(); this.s3 = next() | 1;
  }
  /** Uniform 32-bit unsigned integer (xoshiro128**). */
  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.s1, 5) >>> 0, 7), 9) >>> 0;
    const t = (this.s1 << 9) >>> 0;
    this.s2 ^= this.s0; this.s3 ^= this.s1; this.s1 ^= this.s2; this.s0 ^= this.s3;
    this.s2 = (this.s2 ^ t) >>> 0;
    this.s3 = rotl(this.s3, 11);
    return r;
  }
  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.u32() / 0x1_0000_0000) * n);
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.u32() & 0xff;
    return b;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}
