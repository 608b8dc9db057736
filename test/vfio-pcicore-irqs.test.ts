/**
 * VFIO_DEVICE_SET_IRQS: the validation of vfio_set_irqs_validate_and_prepare (in its order),
 * the action x data-type matrix of vfio_pci_set_irqs_ioctl for MSI / ERR / REQ, eventfd
 * delivery of the device's MSI messages, and pending delivery for masked vectors
 * (qm-hardware.md 5: "an interrupt that arrives while masked is held pending and delivered
 * on unmask").
 */
import { describe, expect, it } from 'vitest';
import { Errno } from '../src/uapi/errno.js';
import {
  VFIO_IRQ_SET_ACTION_MASK,
  VFIO_IRQ_SET_ACTION_TRIGGER,
  VFIO_IRQ_SET_ACTION_UNMASK,
  VFIO_IRQ_SET_DATA_BOOL,
  VFIO_IRQ_SET_DATA_EVENTFD,
  VFIO_IRQ_SET_DATA_NONE,
} from '../src/uapi/vfio.js';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_MSI_MASK_64 } from '../src/hw/pci/regs.js';
import { HOST_MSI_ADDRESS, HOST_MSI_DATA } from '../src/vfio/pci-core/irqs.js';
import { accRig, cfgWrite, eventfd, openCore, setIrqs } from './vfio-pcicore-helpers.js';

const NONE = VFIO_IRQ_SET_DATA_NONE;
const BOOL = VFIO_IRQ_SET_DATA_BOOL;
const EVENTFD = VFIO_IRQ_SET_DATA_EVENTFD;
const TRIGGER = VFIO_IRQ_SET_ACTION_TRIGGER;
const MASK = VFIO_IRQ_SET_ACTION_MASK;
const UNMASK = VFIO_IRQ_SET_ACTION_UNMASK;
const MSI = 1;

function vf1() {
  const rig = accRig(1);
  const vf = rig.acc.vf(1)!;
  const opened = openCore(vf, rig.process);
  cfgWrite(opened.file, PCI_COMMAND, 2, PCI_COMMAND_MASTER); // MSI is a memory write
  return { rig, vf, ...opened, efd: () => eventfd(rig.process) };
}

describe('validation (vfio_set_irqs_validate_and_prepare)', () => {
  it('each header error is EINVAL and changes nothing', () => {
    const { file, core, efd } = vf1();
    const a = efd();
    const cases = [
      { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 1, data: [a.fd], argsz: 19 }, // argsz < minsz
      { flags: NONE | TRIGGER, index: 5, start: 0, count: 0 }, // index >= VFIO_PCI_NUM_IRQS
      { flags: NONE | TRIGGER | (1 << 6), index: MSI, start: 0, count: 1 }, // unknown flag bit
      { flags: NONE | BOOL | TRIGGER, index: MSI, start: 0, count: 1, data: [1] }, // two data types
      { flags: TRIGGER, index: MSI, start: 0, count: 1 }, // no data type
      { flags: NONE | TRIGGER, index: MSI, start: 4, count: 0 }, // start >= count (4 vectors)
      { flags: NONE | TRIGGER, index: MSI, start: 2, count: 3 }, // start + count > 4
      { flags: NONE | TRIGGER, index: MSI, start: 1, count: 0xfffffffe }, // count >= U32_MAX - start
      { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 2, data: [a.fd, a.fd], argsz: 24 }, // argsz short of data
      { flags: EVENTFD | TRIGGER, index: 0, start: 0, count: 1, data: [a.fd] }, // INTx: no vectors
      { flags: EVENTFD | TRIGGER, index: 2, start: 0, count: 1, data: [a.fd] }, // MSI-X: none
    ];
    for (const c of cases) expect(setIrqs(file, c), JSON.stringify(c)).toBe(-Errno.EINVAL);
    expect(core.irqs.msiEnabled).toBe(false);
  });

  it('data beyond the buffer the pointer covers is EFAULT', () => {
    const { file, core, efd } = vf1();
    const a = efd();
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 1, data: [a.fd], bufLen: 22 })).toBe(-Errno.EFAULT);
    expect(setIrqs(file, { flags: NONE | TRIGGER, index: MSI, start: 0, count: 0, bufLen: 12 })).toBe(-Errno.EFAULT);
    expect(core.irqs.msiEnabled).toBe(false);
  });
});

describe('action x data type on MSI', () => {
  it('MASK and UNMASK are ENOTTY for every data type; no action or two actions too', () => {
    const { file, efd } = vf1();
    const a = efd();
    for (const action of [MASK, UNMASK, 0, MASK | TRIGGER]) {
      expect(setIrqs(file, { flags: NONE | action, index: MSI, start: 0, count: 1 })).toBe(-Errno.ENOTTY);
      expect(setIrqs(file, { flags: BOOL | action, index: MSI, start: 0, count: 1, data: [1] })).toBe(-Errno.ENOTTY);
      expect(setIrqs(file, { flags: EVENTFD | action, index: MSI, start: 0, count: 1, data: [a.fd] })).toBe(-Errno.ENOTTY);
    }
    expect(a.efd.signals).toBe(0);
  });

  it('TRIGGER with NONE or BOOL before MSI is enabled is EINVAL (nothing to loop back to)', () => {
    const { file } = vf1();
    expect(setIrqs(file, { flags: NONE | TRIGGER, index: MSI, start: 0, count: 1 })).toBe(-Errno.EINVAL);
    expect(setIrqs(file, { flags: BOOL | TRIGGER, index: MSI, start: 0, count: 1, data: [1] })).toBe(-Errno.EINVAL);
    expect(setIrqs(file, { flags: NONE | TRIGGER, index: MSI, start: 0, count: 0 })).toBe(-Errno.EINVAL);
  });

  it('TRIGGER+EVENTFD enables MSI as the host kernel would program it', () => {
    const { file, vf, core, efd } = vf1();
    const a = efd();
    const b = efd();
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 3, data: [a.fd, b.fd, -1] })).toBe(0);
    expect(core.irqs.msiEnabled).toBe(true);
    expect(core.irqs.vectors).toBe(3);
    expect(vf.msi.enabled).toBe(true);
    expect(vf.msi.enabledVectors).toBe(4); // Multiple Message Enable rounds 3 up to 4
    expect(vf.msi.messageAddress).toBe(HOST_MSI_ADDRESS);
    expect(vf.msi.messageData).toBe(HOST_MSI_DATA);
    // Vectors without an eventfd (2, and 3 which was never requested) stay masked.
    expect(vf.configRead(vf.msi.offset + PCI_MSI_MASK_64, 4)).toBe(0b1100);
    vf.msi.signal(0);
    vf.msi.signal(1);
    vf.msi.signal(1);
    expect([a.efd.count, b.efd.count]).toEqual([1n, 2n]);
  });

  it('loopback: NONE signals every vector in range, BOOL only those with a non-zero byte', () => {
    const { file, efd } = vf1();
    const a = efd();
    const b = efd();
    setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 2, data: [a.fd, b.fd] });
    expect(setIrqs(file, { flags: NONE | TRIGGER, index: MSI, start: 0, count: 2 })).toBe(0);
    expect([a.efd.signals, b.efd.signals]).toEqual([1, 1]);
    expect(setIrqs(file, { flags: BOOL | TRIGGER, index: MSI, start: 0, count: 2, data: [0, 7] })).toBe(0);
    expect([a.efd.signals, b.efd.signals]).toEqual([1, 2]);
    expect(setIrqs(file, { flags: BOOL | TRIGGER, index: MSI, start: 1, count: 1, data: [1] })).toBe(0);
    expect([a.efd.signals, b.efd.signals]).toEqual([1, 3]);
  });

  it('eventfd -1 detaches a vector: its messages pend in the device and reach the next eventfd', () => {
    const { file, vf, efd } = vf1();
    const a = efd();
    const b = efd();
    const c = efd();
    setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 2, data: [a.fd, b.fd] });
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 1, count: 1, data: [-1] })).toBe(0);
    vf.msi.signal(1);
    expect(b.efd.signals).toBe(0);
    expect(vf.msi.isPending(1)).toBe(true);
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 1, count: 1, data: [c.fd] })).toBe(0);
    expect(c.efd.count).toBe(1n);
    expect(vf.msi.isPending(1)).toBe(false);
    expect(b.efd.signals).toBe(0);
  });

  it('a guest mask through config space holds the message pending until it is unmasked', () => {
    const { file, vf, efd } = vf1();
    const a = efd();
    setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 1, data: [a.fd] });
    cfgWrite(file, vf.msi.offset + PCI_MSI_MASK_64, 4, 1);
    vf.msi.signal(0);
    expect(a.efd.count).toBe(0n);
    cfgWrite(file, vf.msi.offset + PCI_MSI_MASK_64, 4, 0);
    expect(a.efd.count).toBe(1n);
  });

  it('vectors past the allocated block are EINVAL once enabled', () => {
    const { file, efd } = vf1();
    const a = efd();
    setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 1, data: [a.fd] });
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 1, count: 1, data: [a.fd] })).toBe(-Errno.EINVAL);
  });

  it('a bad eventfd unwinds the whole block; on a fresh enable MSI is disabled again', () => {
    const { file, vf, core, efd, fd } = vf1();
    const a = efd();
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 2, data: [a.fd, 999] })).toBe(-Errno.EBADF);
    expect(core.irqs.msiEnabled).toBe(false);
    expect(vf.msi.enabled).toBe(false);
    // The device fd is not an eventfd: EINVAL, and the already-attached vector 0 is detached.
    setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 2, data: [a.fd, a.fd] });
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 2, data: [a.fd, fd] })).toBe(-Errno.EINVAL);
    expect(core.irqs.msiEnabled).toBe(true);
    expect(core.irqs.trigger(0)).toBe(null);
    expect(core.irqs.trigger(1)).toBe(null);
  });

  it('count 0 with DATA_NONE disables MSI; count 0 with EVENTFD on a disabled device is ERANGE', () => {
    const { file, vf, core, efd } = vf1();
    const a = efd();
    setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 1, data: [a.fd] });
    expect(setIrqs(file, { flags: NONE | TRIGGER, index: MSI, start: 0, count: 0 })).toBe(0);
    expect(core.irqs.msiEnabled).toBe(false);
    expect(vf.msi.enabled).toBe(false);
    vf.msi.signal(0);
    expect(a.efd.signals).toBe(0);
    expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 0 })).toBe(-Errno.ERANGE);
  });

  it('closing the device releases the interrupts', () => {
    const { file, vf, efd } = vf1();
    const a = efd();
    setIrqs(file, { flags: EVENTFD | TRIGGER, index: MSI, start: 0, count: 1, data: [a.fd] });
    file.close();
    expect(vf.msi.enabled).toBe(false);
    vf.msi.signal(0);
    expect(a.efd.signals).toBe(0);
  });
});

describe('ERR and REQ (vfio_pci_set_ctx_trigger_single)', () => {
  for (const [name, index] of [['ERR', 3], ['REQ', 4]] as const) {
    it(`${name}: eventfd set, loopback with NONE/BOOL, -1 clears, NONE count 0 clears, then EINVAL`, () => {
      const { file, core, efd } = vf1();
      const a = efd();
      const fire = () => (index === 3 ? core.irqs.signalError() : core.irqs.signalRequest());
      expect(setIrqs(file, { flags: NONE | TRIGGER, index, start: 0, count: 1 })).toBe(-Errno.EINVAL); // nothing set
      expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index, start: 0, count: 1, data: [a.fd] })).toBe(0);
      expect(setIrqs(file, { flags: NONE | TRIGGER, index, start: 0, count: 1 })).toBe(0);
      expect(setIrqs(file, { flags: BOOL | TRIGGER, index, start: 0, count: 1, data: [1] })).toBe(0);
      expect(setIrqs(file, { flags: BOOL | TRIGGER, index, start: 0, count: 1, data: [0] })).toBe(0);
      expect(a.efd.signals).toBe(2);
      expect(fire()).toBe(true);
      expect(a.efd.signals).toBe(3);
      expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index, start: 0, count: 1, data: [-2] })).toBe(0); // ignored
      expect(fire()).toBe(true);
      expect(setIrqs(file, { flags: NONE | TRIGGER, index, start: 0, count: 0 })).toBe(0); // clears
      expect(fire()).toBe(false);
      expect(setIrqs(file, { flags: NONE | TRIGGER, index, start: 0, count: 0 })).toBe(-Errno.EINVAL);
      expect(setIrqs(file, { flags: BOOL | TRIGGER, index, start: 0, count: 0 })).toBe(-Errno.EINVAL);
      expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index, start: 0, count: 0 })).toBe(-Errno.EINVAL);
      expect(setIrqs(file, { flags: EVENTFD | MASK, index, start: 0, count: 1, data: [a.fd] })).toBe(-Errno.ENOTTY);
      expect(setIrqs(file, { flags: EVENTFD | TRIGGER, index, start: 0, count: 1, data: [555] })).toBe(-Errno.EBADF);
    });
  }
});
