/**
 * Every failure point of a live migration (vfio-uapi-and-migration.md section 6: "any failed
 * transition: try the recover state (RUNNING on the source) ... the source VM keeps running
 * after a failed migration"; hisi-acc-vfio-pci.md sections 4-5 for the device errors and the
 * match check). In each case: the source's devices are RUNNING again through the uAPI, its
 * vCPUs run, its workload keeps submitting and every job completes exactly once with the
 * right output; the destination never loaded device state (the vendor driver's own arc log)
 * and never ran the guest.
 */
import { describe, expect, it } from 'vitest';
import { getPfQm } from '../src/drivers/hisi-qm/pf-driver.js';
import { Errno, errnoName } from '../src/uapi/errno.js';
import { createPipePair } from '../src/vmm/transport/in-process.js';
import { TransportError } from '../src/vmm/transport/types.js';
import { runDestination } from '../src/vmm/migration/destination.js';
import { migrateInProcess } from '../src/vmm/migration/in-process.js';
import { runSource } from '../src/vmm/migration/source.js';
import type { MigrationOptions } from '../src/vmm/migration/options.js';
import { expectDestNotStarted, expectSourceRecovered, pair, type Pair } from './vmm-migration-helpers.js';

const QM_QUE_ISO_CFG = 0x301154; // hisi-acc-vfio-pci.md section 4

function qm(p: Pair, side: 'source' | 'dest' = 'source') {
  return p[side].host.accelerators[0]!.qm;
}

describe('device errors on the source: the stop fails, the source runs on (hisi-acc spec 4)', () => {
  const cases: [string, (p: Pair) => void, number, (p: Pair) => void][] = [
    ['stuck RAS status (QM_ABNORMAL_INT_STATUS)', (p) => qm(p).faults.setRasStatus(0x4), Errno.EBUSY, (p) => qm(p).faults.setRasStatus(0)],
    ['stuck engine status', (p) => qm(p).faults.setEngineStatus(1), Errno.EBUSY, (p) => qm(p).faults.setEngineStatus(0)],
    ['cache write-back never done', (p) => qm(p).vf(1)!.faults.setWritebackHang(true), Errno.EINVAL, (p) => qm(p).vf(1)!.faults.setWritebackHang(false)],
    // the hung PAUSE_QM stays hung: releasing it later would pause a running function
    ['mailbox hang', (p) => qm(p).vf(1)!.faults.setMailboxHang(true), Errno.ETIMEDOUT, () => {}],
  ];
  for (const [name, inject, errno, clear] of cases) {
    it(`${name}: PRE_COPY -> STOP_COPY fails with ${errnoName(errno)}, the vCPUs resume`, async () => {
      const p = pair();
      inject(p);
      const out = await migrateInProcess(p.source, p.dest);
      const s = out.source;
      expect(s.failure).toMatchObject({ step: 'stop-copy', errno, side: 'source' });
      // the guest had been stopped for the switchover: the recovery restarted it
      expect(s.recovery).toContain('vCPUs resumed on the source');
      expect(s.recovery[0]).toMatch(/PRE_COPY -> RUNNING/);
      clear(p);
      expectDestNotStarted(p.dest, out.destination);
      expectSourceRecovered(p, s);
    });
  }
});

describe('device error with the v1 region protocol (hisi-acc section 7)', () => {
  it('stuck RAS status: SAVING fails, device_state goes back to RUNNING, the guest runs on', async () => {
    const p = pair({ protocol: 'v1' });
    qm(p).faults.setRasStatus(0x4);
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.source.failure).toMatchObject({ step: 'stop-copy', errno: Errno.EBUSY });
    expect(out.source.recovery[0]).toMatch(/SAVING\|RUNNING -> RUNNING/);
    qm(p).faults.setRasStatus(0);
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source, 'v1');
  });
});

describe('device error on the destination', () => {
  it('mailbox hang on the destination VF: RESUMING fails there, the source never stops its guest', async () => {
    const p = pair();
    qm(p, 'dest').vf(1)!.faults.setMailboxHang(true);
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.destination.failure).toMatchObject({ errno: Errno.ETIMEDOUT, side: 'destination' });
    expect(out.source.failure).toMatchObject({ side: 'destination', errno: Errno.ETIMEDOUT });
    expect(out.source.failure!.message).toMatch(/destination refused/);
    expect(out.source.recovery).not.toContain('vCPUs resumed on the source');
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source);
  });

  it('the load fails on the destination after the whole stream arrived: the stopped source takes its guest back', async () => {
    const p = pair();
    // the destination's mailbox hangs once its device is RESUMING: RESUMING -> STOP (load) times out
    let armed = false;
    const opts: MigrationOptions = {
      onVcpusStopped: () => {
        if (!armed) {
          armed = true;
          qm(p, 'dest').vf(1)!.faults.setMailboxHang(true);
        }
      },
    };
    const out = await migrateInProcess(p.source, p.dest, opts);
    expect(armed).toBe(true);
    expect(out.destination.failure).toMatchObject({ step: 'load', side: 'destination' });
    expect(out.source.failure).toMatchObject({ side: 'destination' });
    // the guest was stopped for the switchover and came back: STOP_COPY -> RUNNING
    expect(out.source.recovery[0]).toMatch(/STOP_COPY -> RUNNING/);
    expect(out.source.recovery).toContain('vCPUs resumed on the source');
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source);
  });
});

describe('transport drop mid-stream', () => {
  for (const at of [10, 5000, 200_000]) {
    it(`connection dropped after ${at} bytes: both sides see it, the destination tears down`, async () => {
      const p = pair();
      const out = await migrateInProcess(p.source, p.dest, { fault: { dropAfterBytes: at } });
      expect(out.source.failure).toMatchObject({ code: 'INJECTED' });
      expect(out.destination.failure).toMatchObject({ side: 'destination' });
      expect(out.destination.failure!.message).toMatch(/transport|connection/);
      expectDestNotStarted(p.dest, out.destination);
      expectSourceRecovered(p, out.source);
    });
  }

  it('connection dropped while the guest is stopped (during stop-copy): the guest resumes on the source', async () => {
    const p = pair();
    const [a, b] = createPipePair();
    const send = a.send.bind(a);
    let stopped = false;
    a.send = (chunk: Uint8Array) => {
      if (stopped) {
        a.abort('injected drop after the stop');
        return Promise.reject(new TransportError('INJECTED', 'dropped'));
      }
      return send(chunk);
    };
    const [s, d] = await Promise.all([
      runSource(p.source, a, { onVcpusStopped: () => (stopped = true) }),
      runDestination(p.dest, b),
    ]);
    expect(s.failure).toMatchObject({ step: 'stop-copy' });
    expect(s.recovery).toContain('vCPUs resumed on the source');
    expectDestNotStarted(p.dest, d);
    expectSourceRecovered(p, s);
  });
});

describe('corrupt stream: the destination never starts on bad data', () => {
  const cases: [string, number, RegExp][] = [
    ['magic', 3, /BAD_MAGIC|bad magic/],
    ['version', 11, /version/],
    ['header description', 30, /checksum mismatch in stream header/],
    ['first RAM section payload', 2000, /checksum mismatch/],
    ['deep in the RAM data', 150_000, /checksum mismatch/],
  ];
  for (const [what, at, msg] of cases) {
    it(`byte ${at} flipped (${what})`, async () => {
      const p = pair();
      const out = await migrateInProcess(p.source, p.dest, { fault: { corruptAt: at } });
      expect(out.destination.failure!.message).toMatch(msg);
      expect(out.source.failure).toMatchObject({ side: 'destination' });
      expectDestNotStarted(p.dest, out.destination);
      expectSourceRecovered(p, out.source);
    });
  }

  it('a byte of the final device section flipped after the guest stopped', async () => {
    const p = pair();
    const [a, b] = createPipePair();
    const send = a.send.bind(a);
    let stopped = false;
    let corrupted = 0;
    a.send = (chunk: Uint8Array) => {
      // the first small chunk after the stop is not RAM: the head of the device's stop-copy section
      if (stopped && corrupted === 0 && chunk.length < 400) {
        const c = chunk.slice();
        c[c.length - 6] ^= 0x40;
        corrupted++;
        return send(c);
      }
      return send(chunk);
    };
    const [s, d] = await Promise.all([runSource(p.source, a, { onVcpusStopped: () => (stopped = true) }), runDestination(p.dest, b)]);
    expect(corrupted).toBe(1);
    expect(d.failure!.message).toMatch(/checksum mismatch/);
    expect(s.recovery).toContain('vCPUs resumed on the source');
    expectDestNotStarted(p.dest, d);
    expectSourceRecovered(p, s);
  });

  it('a truncated stream (connection ends cleanly before END) is refused', async () => {
    const p = pair();
    const [a, b] = createPipePair();
    const send = a.send.bind(a);
    let stopped = false;
    // everything after the stop is swallowed; the source's end() then ends the stream early
    a.send = (chunk: Uint8Array) => (stopped ? Promise.resolve() : send(chunk));
    const [s, d] = await Promise.all([runSource(p.source, a, { onVcpusStopped: () => (stopped = true) }), runDestination(p.dest, b)]);
    expect(d.failure).toMatchObject({ code: 'TRUNCATED' });
    expect(s.ok).toBe(false);
    expectDestNotStarted(p.dest, d);
    expectSourceRecovered(p, s);
  });
});

describe('incompatible destination', () => {
  it('different engine: refused at the stream header by PCI device id', async () => {
    const p = pair({ engine: 'zip' }, { engine: 'sec' });
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.destination.failure).toMatchObject({ errno: Errno.ENODEV });
    expect(out.destination.failure!.message).toMatch(/a251 \(zip\).*a256 \(sec\)/);
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source);
  });

  it('different qp_num (more VFs share the destination PF): the vendor driver refuses the match data with EFAULT', async () => {
    const p = pair({ numVfs: 2 }, { numVfs: 4 });
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.destination.failure).toMatchObject({ errno: Errno.EFAULT, side: 'destination' });
    // the match data travels in PRE_COPY: the refusal comes before the guest is ever stopped
    expect(out.source.recovery).not.toContain('vCPUs resumed on the source');
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source);
  });

  it('different queue isolation (QM_QUE_ISO_CFG): EFAULT from the match check', async () => {
    const p = pair();
    getPfQm(p.dest.host.device(p.dest.bdf)!)!.writeReg(QM_QUE_ISO_CFG, 1);
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.destination.failure).toMatchObject({ errno: Errno.EFAULT });
    expect(out.destination.failure!.message).toMatch(/rejected the device state/);
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source);
  });

  it('different guest RAM size: refused at the header', async () => {
    const p = pair({ ramBytes: 32 * 2 ** 20 }, { ramBytes: 48 * 2 ** 20 });
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.destination.failure!.message).toMatch(/RAM/);
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source);
  });

  it('a v1 source to a v2 destination: refused, nothing loaded', async () => {
    const p = pair({ protocol: 'v1' }, { protocol: 'v2' });
    const out = await migrateInProcess(p.source, p.dest);
    expect(out.destination.failure).toMatchObject({ errno: Errno.EPROTO });
    expectDestNotStarted(p.dest, out.destination);
    expectSourceRecovered(p, out.source, 'v1');
  });
});
