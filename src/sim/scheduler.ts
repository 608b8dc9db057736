/**
 * The simulator's explicit event loop. Nothing in the device model uses wall time or
 * Node's timers: work is queued here with a delay in simulated nanoseconds and runs only
 * when a caller drives the loop (`runUntilIdle`, `advance`, `runUntil`). With all latencies
 * at 0 (the default) every device action completes on the next `runUntilIdle()`.
 *
 * Ordering is total and deterministic: by due time, then by insertion order.
 */
export type Task = () => void;

interface Entry {
  due: number;
  seq: number;
  task: Task;
  cancelled: boolean;
}

export interface TimerHandle {
  cancel(): void;
}

export class Scheduler {
  private heap: Entry[] = [];
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
    const e: Entry = { due: this.nowNs + Math.max(0, delayNs), seq: this.seq++, task, cancelled: false };
    this.push(e);
    return { cancel: () => { e.cancelled = true; } };
  }

  /** Number of queued (not cancelled) tasks. */
  get pending(): number {
    let n = 0;
    for (const e of this.heap) if (!e.cancelled) n++;
    return n;
  }

  /** Runs one due-ordered task, moving time forward to it. Returns false when idle. */
  step(): boolean {
    for (;;) {
      const e = this.pop();
      if (!e) return false;
      if (e.cancelled) continue;
      if (e.due > this.nowNs) this.nowNs = e.due;
      this.executed++;
      e.task();
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
      const top = this.peek();
      if (!top || top.due > target) break;
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

  private peek(): Entry | undefined {
    while (this.heap.length && this.heap[0]!.cancelled) this.pop();
    return this.heap[0];
  }

  private less(a: Entry, b: Entry): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  private push(e: Entry): void {
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  private pop(): Entry | undefined {
    const h = this.heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
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
