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
  /** Where the read that finds EOF goes (no view of `buf` made per iteration). */
  spill: Uint8Array;
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
  rig = { host, vms, streams: [], buf: new Uint8Array(ACC_VF_DATA_SIZE), spill: new Uint8Array(ACC_VF_DATA_SIZE) };
  for (const vm of vms) rig.streams.push(saveOnce(rig, vm, true));
  return rig;
}

function must(vm: AccVm, state: number): number {
  const r = setMigState(vm.device, state);
  if (r.ret < 0) throw new Error(`state ${state}: ${r.ret}`);
  return r.dataFd;
}

/**
 * Reads the data fd to EOF into `buf`; once `buf` is full, further reads go to `spill` (a
 * stream that long fails the caller's length check), so the loop allocates nothing.
 */
function readAll(fds: FdTable, fd: number, buf: Uint8Array, spill: Uint8Array): number {
  const f = fds.get(fd)!;
  let n = 0;
  for (;;) {
    const r = f.read(n === 0 ? buf : n < buf.length ? buf.subarray(n) : spill);
    if (r <= 0) break;
    n += r;
  }
  fds.close(fd);
  return n;
}

/** RUNNING -> STOP_COPY -> EOF; optionally back to RUNNING. Returns the stream. */
function saveOnce(r: Rig, vm: AccVm, back: boolean): Uint8Array {
  const fd = must(vm, VFIO_DEVICE_STATE_STOP_COPY);
  const n = readAll(r.host.fds, fd, r.buf, r.spill);
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
  const n = readAll(r.host.fds, fd, r.buf, r.spill);
  if (n > ACC_VF_DATA_SIZE) throw new Error(`saved ${n} bytes`);
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

/**
 * Per-step medians of the 1-VF round trip next to the bare codec, printed after the suite.
 * benny reports means, which on a loaded machine also carry every preemption that lands in
 * a sample; the median of many single round trips does not, and it shows which step costs
 * what.
 */
function reportArcMedians(r: Rig, rounds = 3000): void {
  const steps = [
    'RUNNING -> STOP', 'STOP -> STOP_COPY', 'read to EOF + close', 'STOP_COPY -> STOP', 'STOP -> RESUMING',
    'write (match check)', 'RESUMING -> STOP (load)', 'close', 'STOP -> RUNNING (start)',
  ];
  const vm = r.vms[0]!;
  const fds = r.host.fds;
  const t = steps.map(() => new Float64Array(rounds));
  const total = new Float64Array(rounds);
  const bareT = new Float64Array(rounds);
  for (let i = -500; i < rounds; i++) {
    const at = [performance.now()];
    must(vm, VFIO_DEVICE_STATE_STOP); at.push(performance.now());
    const sfd = must(vm, VFIO_DEVICE_STATE_STOP_COPY); at.push(performance.now());
    if (readAll(fds, sfd, r.buf, r.spill) !== ACC_VF_DATA_SIZE) throw new Error('save length');
    at.push(performance.now());
    must(vm, VFIO_DEVICE_STATE_STOP); at.push(performance.now());
    const rfd = must(vm, VFIO_DEVICE_STATE_RESUMING); at.push(performance.now());
    if (fds.get(rfd)!.write(r.buf) !== ACC_VF_DATA_SIZE) throw new Error('resume write');
    at.push(performance.now());
    must(vm, VFIO_DEVICE_STATE_STOP); at.push(performance.now());
    fds.close(rfd); at.push(performance.now());
    must(vm, VFIO_DEVICE_STATE_RUNNING); at.push(performance.now());
    const b0 = performance.now();
    for (let k = 0; k < 10; k++) bare.fn();
    const b1 = performance.now();
    if (i < 0) continue;
    for (let s = 0; s < steps.length; s++) t[s]![i] = at[s + 1]! - at[s]!;
    total[i] = at[at.length - 1]! - at[0]!;
    bareT[i] = (b1 - b0) / 10;
  }
  const med = (a: Float64Array): number => a.slice().sort()[a.length >> 1]! * 1000;
  const lines = ['', '1-VF round trip, median of single runs (us):', '| step | median |', '|---|---:|'];
  steps.forEach((name, s) => lines.push(`| ${name} | ${med(t[s]!).toFixed(2)} |`));
  lines.push(`| round trip | ${med(total).toFixed(2)} |`, `| bare encode+decode | ${med(bareT).toFixed(3)} |`);
  lines.push(`| round trip / bare | ${(med(total) / med(bareT)).toFixed(1)}x |`);
  console.log(lines.join('\n'));
}

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
    teardown: () => { reportArcMedians(build()); },
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
