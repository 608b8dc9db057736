/**
 * The world of the migration campaigns: a host with hisi-acc-vfio-pci loaded (the vendor
 * driver's own bench, src/drivers/hisi-acc/testbed.ts) and a ZIP V3 PF with twelve VFs, of
 * which three are used:
 * - VF1: a VM with a started guest QM driver (the device whose migration state is fuzzed,
 *   and the migration source);
 * - VF2: assigned to a second VM without a guest driver (the resume target);
 * - VF3: a witness VM whose jobs must keep completing;
 * plus the PF's own queues as a second witness (PfSharedIo next to the PF driver).
 */
import { inflateRawSync } from 'node:zlib';
import { Accel } from '../guest/accel.js';
import { QmVfDriver } from '../guest/qm-vf-driver.js';
import { GuestRamAllocator } from '../guest/ram.js';
import { SparseMemory } from '../mem/sparse-memory.js';
import { KernelError } from '../uapi/errno.js';
import { AccHost, AccVm, assignVf, type VmmLink } from '../drivers/hisi-acc/testbed.js';
import type { HisiAccDriverOptions } from '../drivers/hisi-acc/device.js';
import { PfSharedIo } from './pf-io.js';
import { configHash, jobInput } from './rig.js';
import type { Recorder } from './runner.js';
import { StormGuard, checkGuards, resetGuards } from './storm.js';

const DEPTHS = { sqDepth: 64, cqDepth: 64, eqDepth: 64, aeqDepth: 64 };
/** Guest RAM of each VM: 16 MiB, far below the SMMU MSI window. */
export const ACC_VM_RAM = 16 * 2 ** 20;
const PF_RAM_BASE = 2 ** 30;
const RAM_FLOOR = 2 ** 20;

export interface AccWitness {
  name: string;
  accel: Accel;
  state(): string;
}

export interface AccRig {
  host: AccHost;
  /** Storm guards: VF1's guest first, then the witnesses'. */
  guards: StormGuard[];
  vm1: AccVm;
  accel1: Accel;
  /** VF2 assigned without a guest (resume target). */
  dst: VmmLink;
  witnesses: AccWitness[];
  initial: string[];
}

/**
 * `driver` selects the vendor driver's options, e.g. `{ protocol: 'v1' }` for the v1-region
 * campaign (hisi-acc-vfio-pci.md section 7); the layout is the same.
 */
export function buildAccRig(driver?: HisiAccDriverOptions): AccRig {
  // Twelve VFs split the queues 80 each: the driver restarts every queue of a VF on start,
  // so fewer queues per VF keep each migration input cheap.
  const host = new AccHost({ numVfs: 12, ...(driver ? { driver } : {}) });
  for (const n of [1, 2, 3]) {
    const r = host.bind(n);
    if (r < 0) throw new Error(`fuzz acc rig: binding VF${n} returned ${r}`);
  }
  const guards = [new StormGuard('VF1'), new StormGuard('PF'), new StormGuard('VF3')];
  const vm1 = guardedVm(host, 1, guards[0]!);
  const accel1 = new Accel(vm1.driver!, { timeoutNs: 1_000_000_000 });
  const dst = assignVf(host, 2, new SparseMemory(ACC_VM_RAM));
  const vm3 = guardedVm(host, 3, guards[2]!);
  const pfIo = guards[1]!.wrap(new PfSharedIo(host.pf, host.vf(1).device));
  const pfDriver = QmVfDriver.probe({ ...DEPTHS, io: pfIo, ram: new GuestRamAllocator(host.host.memory, PF_RAM_BASE, ACC_VM_RAM), sched: host.sched });
  pfDriver.start();
  pfIo.deliver([pfDriver.info.vectors.eq, pfDriver.info.vectors.aeq]);
  const pfFn = host.acc.pf;
  const vf3 = host.vf(3).fn;
  const witnesses: AccWitness[] = [
    { name: 'PF', accel: new Accel(pfDriver, { timeoutNs: 1_000_000_000 }), state: () => `cfg ${configHash(pfFn, 0x400)}` },
    { name: 'VF3 (hisi-acc-vfio-pci)', accel: new Accel(vm3.driver!, { timeoutNs: 1_000_000_000 }), state: () => `cfg ${configHash(vf3)}` },
  ];
  host.sched.runUntilIdle();
  return { host, guards, vm1, accel1, dst, witnesses, initial: witnesses.map((w) => w.state()) };
}

/** A VM on VF n whose guest driver takes its interrupts through `guard`. */
function guardedVm(host: AccHost, n: number, guard: StormGuard): AccVm {
  const vm = new AccVm(host, n, { ramBytes: ACC_VM_RAM, start: false });
  guard.wrap(vm.io);
  const d = QmVfDriver.probe({ ...DEPTHS, io: vm.io, ram: vm.ram, sched: host.sched });
  d.start();
  vm.driver = d;
  vm.accel = new Accel(d);
  return vm;
}

/**
 * The VF1 guest starts over, as after a surprise reset: the old driver is torn down (best
 * effort) and a new one probes and starts on fresh RAM bookkeeping (the RAM is reused).
 */
export function freshGuest(rig: AccRig): Accel {
  const vm = rig.vm1;
  try {
    vm.driver?.uninit();
  } catch (e) {
    // a reset device may refuse parts of the teardown; the new probe starts from scratch
    if (!(e instanceof KernelError)) throw e;
  }
  const ram = new GuestRamAllocator(vm.mem, RAM_FLOOR, vm.mem.size - RAM_FLOOR);
  const d = QmVfDriver.probe({ ...DEPTHS, io: vm.io, ram, sched: rig.host.sched });
  d.start();
  vm.driver = d;
  return new Accel(d, { timeoutNs: 1_000_000_000 });
}

/** One compression job, checked with node:zlib; returns an error text or null. */
export function runJob(accel: Accel, index: number): string | null {
  const input = jobInput(index);
  let out: Uint8Array;
  try {
    out = accel.compress(input, 'deflate');
  } catch (e) {
    return `job failed: ${e instanceof Error ? e.message : String(e)}`;
  }
  try {
    if (!inflateRawSync(out).equals(input)) return 'output does not inflate to the input';
  } catch {
    return 'output is not a deflate stream';
  }
  return null;
}

export function checkAccWitnesses(rig: AccRig, rec: Recorder, index: number): void {
  resetGuards(rig.guards);
  rig.witnesses.forEach((w, i) => {
    rec.entry('witness job');
    const err = runJob(w.accel, index);
    if (err) rec.violation('victim', `${w.name} ${err}`);
    else rec.outcome(`witness ok: ${w.name}`);
    const s = w.state();
    if (s !== rig.initial[i]) rec.violation('victim', `${w.name} state changed: now ${s}, was ${rig.initial[i]}`);
  });
  checkGuards(rig.guards, rec);
}

/** The campaigns' checkpoint on an acc rig: let everything settle, then check the witnesses. */
export function accCheckpoint(ctx: { rig: AccRig }, rec: Recorder, index: number): void {
  ctx.rig.host.sched.runUntilIdle(2_000_000);
  checkAccWitnesses(ctx.rig, rec, index);
}
