/**
 * The clock a guest's own code runs on. Time and device work are the host's scheduler; what
 * the guest queues for itself (the driver's interrupt bottom half) runs only while the vCPUs
 * run: a task that comes due while they are paused waits and runs on resume, as a guest
 * thread simply does not execute while its vCPUs are stopped. An error raised by guest code
 * stays in the guest (the VM records it); it never unwinds the host's event loop.
 */
import { Scheduler, type Task, type TimerHandle } from '../sim/scheduler.js';

/** The VM side of the gate. */
export interface VcpuGate {
  readonly vcpusRunning: boolean;
  /** Changes when the guest is replaced (a failed CPU-state load): older guest tasks are dropped. */
  readonly guestEpoch: number;
  /** Keeps a guest task that came due while paused, to run on resume. */
  deferGuestTask(task: Task): void;
  /** Runs guest code: a guest failure (KernelError) is the guest's, recorded, not the host's. */
  runGuest(task: Task): void;
}

export class GuestClock extends Scheduler {
  constructor(private readonly host: Scheduler, private readonly gate: VcpuGate) {
    super();
  }

  override get now(): number {
    return this.host.now;
  }

  override get pending(): number {
    return this.host.pending;
  }

  override schedule(delayNs: number, task: Task): TimerHandle {
    const gate = this.gate;
    const epoch = gate.guestEpoch;
    const guarded = (): void => {
      if (gate.guestEpoch === epoch) gate.runGuest(task);
    };
    return this.host.schedule(delayNs, () => {
      if (gate.vcpusRunning) guarded();
      else gate.deferGuestTask(guarded);
    });
  }

  override step(): boolean {
    return this.host.step();
  }

  override runUntilIdle(maxTasks?: number): number {
    return this.host.runUntilIdle(maxTasks);
  }

  override advance(ns: number): void {
    this.host.advance(ns);
  }

  override runUntil(cond: () => boolean, maxTasks?: number): boolean {
    return this.host.runUntil(cond, maxTasks);
  }
}
