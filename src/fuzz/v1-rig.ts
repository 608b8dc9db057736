/**
 * The world of the v1-region campaign: the acc-rig layout (VF1 with a started guest QM
 * driver, VF2 assigned without a guest, VF3 and the PF's own queues as witnesses) on a host
 * whose hisi-acc-vfio-pci runs the v1 region protocol (hisi-acc-vfio-pci.md section 7).
 */
import { Accel } from '../guest/accel.js';
import { QmVfDriver } from '../guest/qm-vf-driver.js';
import { GuestRamAllocator } from '../guest/ram.js';
import { SparseMemory } from '../mem/sparse-memory.js';
import { AccHost, AccVm, assignVf } from '../drivers/hisi-acc/testbed.js';
import { ACC_VM_RAM, type AccRig, type AccWitness } from './acc-rig.js';
import { PfSharedIo } from './pf-io.js';
import { configHash } from './rig.js';
import { StormGuard } from './storm.js';

const DEPTHS = { sqDepth: 64, cqDepth: 64, eqDepth: 64, aeqDepth: 64 };
const PF_RAM_BASE = 2 ** 30;

function startedVm(host: AccHost, n: number, guard: StormGuard): AccVm {
  const vm = new AccVm(host, n, { ramBytes: ACC_VM_RAM, start: false });
  guard.wrap(vm.io);
  const d = QmVfDriver.probe({ ...DEPTHS, io: vm.io, ram: vm.ram, sched: host.sched });
  d.start();
  vm.driver = d;
  vm.accel = new Accel(d);
  return vm;
}

export function buildV1Rig(): AccRig {
  const host = new AccHost({ numVfs: 12, driver: { protocol: 'v1' } });
  for (const n of [1, 2, 3]) {
    const r = host.bind(n);
    if (r < 0) throw new Error(`fuzz v1 rig: binding VF${n} returned ${r}`);
  }
  const guards = [new StormGuard('VF1'), new StormGuard('PF'), new StormGuard('VF3')];
  const vm1 = startedVm(host, 1, guards[0]!);
  const accel1 = new Accel(vm1.driver!, { timeoutNs: 1_000_000_000 });
  const dst = assignVf(host, 2, new SparseMemory(ACC_VM_RAM));
  const vm3 = startedVm(host, 3, guards[2]!);
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
