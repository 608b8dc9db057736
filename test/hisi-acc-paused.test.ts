/**
 * Fuzz bug `paused-without-guest`: a VF stopped (PAUSE_QM) while no guest driver is loaded and
 * then set back to RUNNING must be a working device for a guest driver loaded afterwards
 * (hisi-acc-vfio-pci.md sections 4-6: RUNNING means the device runs). start_device skips a
 * function without a started driver, so the driver has to undo its own pause.
 */
import { inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { AccHost, AccVm, readToEnd } from '../src/drivers/hisi-acc/testbed.js';
import { Accel } from '../src/guest/accel.js';
import { QmVfDriver } from '../src/guest/qm-vf-driver.js';
import { S, VFIO_DEVICE_RESET, rig, setState } from './hisi-acc-helpers.js';

function jobInput(): Uint8Array {
  const input = new Uint8Array(3000);
  for (let i = 0; i < input.length; i++) input[i] = (i * 7) % 13 === 0 ? i & 0xff : 0x41 + (i % 5);
  return input;
}

/** Loads a guest driver on `vm` and runs one deflate job, checked with node:zlib. */
function loadDriverAndCompress(host: AccHost, vm: AccVm): Uint8Array {
  try {
    vm.driver?.uninit();
  } catch {
    // a reset device refuses parts of the teardown; the new probe starts from scratch
  }
  const d = QmVfDriver.probe({ io: vm.io, ram: vm.ram, sched: host.sched });
  d.start();
  vm.driver = d;
  const accel = new Accel(d, { timeoutNs: 50_000_000 });
  const out = accel.compress(jobInput(), 'deflate');
  return new Uint8Array(inflateRawSync(out));
}

describe('RUNNING after STOP without a guest driver leaves a working device (fuzz: paused-without-guest)', () => {
  it('no guest driver ever loaded: RUNNING -> STOP pauses, STOP -> RUNNING un-pauses, a later driver works', () => {
    const { host, vm } = rig({ vm: { start: false } });
    const qf = host.acc.qm.vf(1)!;
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(qf.paused).toBe(true); // PAUSE_QM went out (section 4 stop_device)
    expect(setState(vm!.device, S.RUNNING).ret).toBe(0);
    expect(qf.paused).toBe(false);
    expect(loadDriverAndCompress(host, vm!)).toEqual(jobInput());
  });

  it('after VFIO_DEVICE_RESET (the guest driver is gone): STOP, RUNNING, then a re-probed driver works', () => {
    const { host, vm } = rig();
    expect(vm!.device.ioctl(VFIO_DEVICE_RESET)).toBe(0);
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(host.acc.qm.vf(1)!.paused).toBe(true);
    expect(setState(vm!.device, S.RUNNING).ret).toBe(0);
    expect(host.acc.qm.vf(1)!.paused).toBe(false);
    expect(loadDriverAndCompress(host, vm!)).toEqual(jobInput());
  });

  it('an aborted save and a match-only resume (40 bytes) also end un-paused', () => {
    const { host, vm } = rig({ vm: { start: false } });
    const dev = vm!.device;
    const qf = host.acc.qm.vf(1)!;
    const save = setState(dev, S.STOP_COPY);
    expect(save.ret).toBe(0);
    const stream = readToEnd(host.fds, save.fd).bytes;
    expect(stream.length).toBe(40); // QM_NOT_READY: match data only (section 5)
    expect(host.fds.close(save.fd)).toBe(0);
    expect(setState(dev, S.STOP).ret).toBe(0);
    const res = setState(dev, S.RESUMING);
    expect(res.ret).toBe(0);
    expect(host.fds.get(res.fd)!.write(stream)).toBe(40);
    expect(setState(dev, S.STOP).ret).toBe(0);
    expect(host.fds.close(res.fd)).toBe(0);
    expect(qf.paused).toBe(true);
    expect(setState(dev, S.RUNNING).ret).toBe(0);
    expect(qf.paused).toBe(false);
    expect(loadDriverAndCompress(host, vm!)).toEqual(jobInput());
  });

  it('a started guest is resumed by start_device as before: its SQ doorbells restart every queue once', () => {
    const { host, vm } = rig();
    const qf = host.acc.qm.vf(1)!;
    const rung = qf.debugSnapshot().doorbells.rung;
    expect(setState(vm!.device, S.STOP).ret).toBe(0);
    expect(setState(vm!.device, S.RUNNING).ret).toBe(0);
    expect(qf.paused).toBe(false);
    // qm_dev_cmd_init writes registers only; the restart is one priority-1 SQ doorbell per queue.
    expect(qf.debugSnapshot().doorbells.rung - rung).toBe(qf.qpNum);
  });
});
