/**
 * MMIO register access rate as the guest driver sees it (GuestPciIo over a VF PciFunction:
 * memory-space gate, BAR routing, the QM BAR2 region with its audit counter, the register
 * decode) beside reading a Uint32Array element. Each case does 1000 accesses per call, so
 * accesses/s = ops/s x 1000. Target (task I): >= 20 M accesses/s.
 */
import type { BenchSuite } from './harness.js';
import { createBareVm, type BareVm } from '../src/guest/bare-vm.js';

const N = 1000;
let vm: BareVm | undefined;
let cqHead = 0;
const words = new Uint32Array(4096).map((_, i) => i * 2654435761);
let sink = 0;

export const suites: BenchSuite[] = [
  {
    suite: 'mmio guest register access (x1000 per op)',
    quick: true,
    setup: () => {
      vm = createBareVm({ profile: 'zip-v3' });
      const qp = vm.driver.createQp(0);
      cqHead = 0;
      // nothing submitted: the CQ doorbell below re-states the head, as the driver's per-CQE one does
      void qp;
    },
    teardown: () => { vm = undefined; },
    cases: [
      {
        name: 'Uint32Array element read',
        fn: () => {
          let s = 0;
          for (let i = 0; i < N; i++) s += words[(i * 7) & 4095]!;
          sink ^= s;
        },
      },
      {
        name: 'read32 QM_VF_EQ_INT_MASK (0xC)',
        baseline: 'Uint32Array element read',
        fn: () => {
          const io = vm!.guest().io;
          let s = 0;
          for (let i = 0; i < N; i++) s += io.read32(2, 0xc);
          sink ^= s;
        },
      },
      {
        name: 'write64 CQ doorbell (0x1000)',
        baseline: 'Uint32Array element read',
        fn: () => {
          const io = vm!.guest().io;
          for (let i = 0; i < N; i++) io.write64(2, 0x1000, 1 << 12, cqHead);
        },
      },
    ],
  },
];

export function benchSink(): number {
  return sink;
}
