/**
 * Device-state migration latency of hisi-acc-vfio-pci through the device fd, beside the bare
 * acc_vf_data encode+decode (the baseline in every suite).
 *
 * The host has a ZIP PF with 63 VFs (the PF driver's split gives each 15 queues), every VF
 * bound to the driver and assigned to a VM with a started guest driver (QM_READY), so each
 * step does its full work: PAUSE_QM, status polls, cache write-back, register reads and
 * mailbox reads on the save; match check, register and mailbox writes, and one SQ doorbell
 * per queue on the resume.
 *
 * - save: RUNNING -> STOP_COPY, read the data fd to EOF, then STOP_COPY -> RUNNING (the
 *   device has to be running again for the next iteration);
 * - resume: RUNNING -> RESUMING, write the stream, -> STOP (load), -> RUNNING (start);
 * - round trip: save then resume the saved stream on the same VF;
 * - N VFs: the round trip of N VFs one after the other.
 *
 * Targets: a 1-VF round trip within 20x of encode+decode and at most 10 us; 63 VFs within 2 ms.
 */
import type { BenchSuite } from './harness.js';
import { ACC_VF_DATA_SIZE, decodeAccVfData, emptyAccVfData, encodeAccVfData } from '../src/drivers/hisi-acc/acc-vf-data.js';
import { AccHost, AccVm, setMigState } from '../src/drivers/hisi-acc/testbed.js';
import {
  VFIO_DEVICE_STATE_RESUMING, VFIO_DEVICE_STATE_RUNNING, VFIO_DEVICE_STATE_STOP, VFIO_DEVICE_STATE_STOP_COPY,
} from '../src/uapi/vfio.js';
import type { FdTable } from '../src/vfio/fd.js';

interface Rig {
  host: AccHost;
  vms: AccVm[];
  streams: Uint8Array[];
  buf: Uint8Array;
}

let rig: Rig | null = null;

function build(): Rig {
  if (rig) return rig;
  const host = new AccHost({ profile: 'zip-v3', numVfs: 63 });
  const vms: AccVm[] = [];
  for (let n = 1; n <= 63; n++) {
    if (host.bind(n) !== 0) throw new Error(`bind VF ${n}`);
    vms.push(new AccVm(host, n, { ramBytes: 8 * 2 ** 20, driver: { sqDepth: 16, cqDepth: 16, eqDepth: 64, aeqDepth: 64 } }));
  }
  rig = { host, vms, streams: [], buf: new Uint8Array(ACC_VF_DATA_SIZE) };
  for (const vm of vms) rig.streams.push(saveOnce(rig, vm, true));
  return rig;
}

function must(vm: AccVm, state: number): number {
  const r = setMigState(vm.device, state);
  if (r.ret < 0) throw new Error(`state ${state}: ${r.ret}`);
  return r.dataFd;
}

function readAll(fds: FdTable, fd: number, buf: Uint8Array): number {
  const f = fds.get(fd)!;
  let n = 0;
  for (;;) {
    const r = f.read(n === 0 ? buf : buf.subarray(n));
    if (r <= 0) break;
    n += r;
  }
  fds.close(fd);
  return n;
}

/** RUNNING -> STOP_COPY -> EOF; optionally back to RUNNING. Returns the stream. */
function saveOnce(r: Rig, vm: AccVm, back: boolean): Uint8Array {
  const fd = must(vm, VFIO_DEVICE_STATE_STOP_COPY);
  const n = readAll(r.host.fds, fd, r.buf);
  if (n !== ACC_VF_DATA_SIZE) throw new Error(`saved ${n} bytes`);
  if (back) must(vm, VFIO_DEVICE_STATE_RUNNING);
  return r.buf.slice(0, n);
}

/** (RUNNING|STOP_COPY) -> RESUMING, write, -> STOP, -> RUNNING. */
function resumeOnce(r: Rig, vm: AccVm, stream: Uint8Array): void {
  const fd = must(vm, VFIO_DEVICE_STATE_RESUMING);
  const f = r.host.fds.get(fd)!;
  if (f.write(stream) !== stream.length) throw new Error('resume write');
  must(vm, VFIO_DEVICE_STATE_STOP);
  r.host.fds.close(fd);
  must(vm, VFIO_DEVICE_STATE_RUNNING);
}

function roundTrip(r: Rig, vm: AccVm): void {
  const fd = must(vm, VFIO_DEVICE_STATE_STOP_COPY);
  const n = readAll(r.host.fds, fd, r.buf);
  must(vm, VFIO_DEVICE_STATE_STOP);
  resumeOnce(r, vm, n === ACC_VF_DATA_SIZE ? r.buf : r.buf.subarray(0, n));
}

const sample = (() => {
  const d = emptyAccVfData();
  Object.assign(d, { qp_num: 15, dev_id: 0xa251, qp_base: 0x3b0, vf_qm_state: 0, eqe_dma: 0x101000n, aeqe_dma: 0x103000n, sqc_dma: 0x104000n, cqc_dma: 0x10b800n });
  return d;
})();
const encBuf = new Uint8Array(ACC_VF_DATA_SIZE);
let sink = 0;

const BARE = 'acc_vf_data encode+decode';
const bare = { name: BARE, fn: () => { sink ^= decodeAccVfData(encodeAccVfData(sample, ACC_VF_DATA_SIZE, encBuf)).data.qp_num; } };

export const suites: BenchSuite[] = [
  {
    suite: 'migration-device: 1 VF',
    quick: true,
    setup: () => { build(); },
    cases: [
      bare,
      { name: 'save (RUNNING -> STOP_COPY -> EOF -> RUNNING)', baseline: BARE, fn: () => { const r = build(); saveOnce(r, r.vms[0]!, true); } },
      { name: 'resume (RESUMING -> write -> STOP -> RUNNING)', baseline: BARE, fn: () => { const r = build(); resumeOnce(r, r.vms[0]!, r.streams[0]!); } },
      { name: 'round trip (save + resume)', baseline: BARE, fn: () => { const r = build(); roundTrip(r, r.vms[0]!); } },
    ],
  },
  {
    suite: 'migration-device: N VFs round trip',
    quick: true,
    setup: () => { build(); },
    cases: [
      bare,
      { name: '1 VF', baseline: BARE, fn: () => { const r = build(); roundTrip(r, r.vms[0]!); } },
      { name: '8 VFs', baseline: BARE, fn: () => { const r = build(); for (let i = 0; i < 8; i++) roundTrip(r, r.vms[i]!); } },
      { name: '63 VFs', baseline: BARE, fn: () => { const r = build(); for (const vm of r.vms) roundTrip(r, vm); } },
    ],
    teardown: () => {
      if (sink === 0.5) console.log(sink);
    },
  },
];
