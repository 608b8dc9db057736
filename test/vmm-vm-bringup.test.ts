/**
 * VM bring-up through the real VFIO path (vfio-uapi-and-migration.md sections 1 and 6): the
 * VF bound to hisi-acc-vfio-pci by the administrator's sysfs flow, container + TYPE1v2 +
 * group + MAP_DMA at IOVA = GPA 0x40000000 + device fd, the guest QM driver probing through
 * the VMM's VfioGuestIo, and jobs completing with correct output through eventfd-delivered
 * MSIs. Outputs are checked against node:zlib, node:crypto and BigInt arithmetic.
 */
import * as crypto from 'node:crypto';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { PCI_COMMAND, PCI_COMMAND_MASTER, PCI_COMMAND_MEMORY } from '../src/hw/pci/regs.js';
import { createSource, type TestbedEndpoint } from '../src/vmm/testbed.js';
import { VIRT_RAM_BASE } from '../src/vmm/vm.js';

const live: TestbedEndpoint[] = [];
afterEach(() => {
  for (const e of live.splice(0)) e.vm.shutdown();
});

function source(engine: 'zip' | 'sec' | 'hpre', hw: 'v2' | 'v3' | 'v4'): TestbedEndpoint {
  const s = createSource({ engine, hw, workload: false, ramBytes: 32 * 2 ** 20 });
  live.push(s);
  return s;
}

function bigOf(b64: string): bigint {
  return BigInt('0x' + Buffer.from(b64, 'base64url').toString('hex'));
}

function modPow(b: bigint, e: bigint, m: bigint): bigint {
  let r = 1n;
  let x = b % m;
  for (let k = e; k > 0n; k >>= 1n) {
    if (k & 1n) r = (r * x) % m;
    x = (x * x) % m;
  }
  return r;
}

const rsa = (() => {
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 1024 });
  const j = privateKey.export({ format: 'jwk' }) as Record<string, string>;
  return {
    n: bigOf(j.n!), e: bigOf(j.e!), d: bigOf(j.d!), p: bigOf(j.p!), q: bigOf(j.q!), dp: bigOf(j.dp!),
    dq: bigOf(j.dq!), qinv: bigOf(j.qi!),
  };
})();

function toBig(b: Uint8Array): bigint {
  return BigInt('0x' + (Buffer.from(b).toString('hex') || '0'));
}

describe('VM bring-up through VFIO (spec 6: a VMM opens container, group, device)', () => {
  it('maps all guest RAM at IOVA = GPA 0x40000000 in a TYPE1v2 container and opens the VF', () => {
    const s = source('zip', 'v3');
    const vm = s.vm;
    expect(vm.ramBase).toBe(0x4000_0000);
    expect(VIRT_RAM_BASE).toBe(0x4000_0000);
    const maps = vm.container.type1!.mappings();
    expect(maps.map((m) => [m.iova, m.size, m.vaddr])).toEqual([[0x4000_0000, 32 * 2 ** 20, vm.ramVaddr]]);
    // the process really maps guest RAM at that vaddr: a store through it is visible to the guest
    s.host.process.user.copyToUser(vm.ramVaddr + 0x2000, Uint8Array.of(0xa5));
    expect(vm.ramRead(0x4000_2000, 1)[0]).toBe(0xa5);
    // the VF is bound to the vendor driver and its device fd is open
    expect(s.host.sysfsReadlink(`/sys/bus/pci/devices/${s.bdf}/driver`)).toMatch(/hisi-acc-vfio-pci$/);
    expect(s.host.process.fds.get(s.deviceFd)).toBe(s.device);
    // the VF's DMA goes through the container's IOMMU domain
    expect(s.device.core.iommuDomain).toBe(vm.iommuDomain);
  });

  it('sees BAR2 as its 32 KiB functional half, mmapped, and BAR4 mmapped (hisi-acc-vfio-pci 2)', () => {
    const s = source('sec', 'v3');
    expect(s.io.barSize(2)).toBe(0x8000);
    expect(s.io.barMapped(2)).toBe(true);
    expect(s.io.barMapped(4)).toBe(true);
    expect(s.io.stats.slowPath).toBe(0);
  });

  it('has the guest program MSI through the emulated capability: SET_IRQS wires one eventfd per vector', () => {
    const s = source('zip', 'v3');
    const d = s.vm.driver!;
    const core = s.device.core;
    expect(core.irqs.msiEnabled).toBe(true);
    expect(core.irqs.vectors).toBe(s.io.msiVectors);
    expect(s.io.msiVectors).toBeGreaterThanOrEqual(d.info.vectors.count);
    // the guest enabled memory and bus mastering through the config region
    expect(s.io.cfgRead(PCI_COMMAND, 2) & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)).toBe(PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);
  });

  for (const hw of ['v3', 'v4'] as const) {
    it(`ZIP ${hw}: compress/decompress complete through eventfd MSIs with node:zlib-checked output`, () => {
      const s = source('zip', hw);
      const a = s.vm.accel!;
      const data = Buffer.from('vfio guest io '.repeat(300));
      const c = a.compress(data, 'deflate');
      expect(Buffer.from(inflateRawSync(c)).equals(data)).toBe(true);
      const back = a.decompress(deflateRawSync(data), 'deflate');
      expect(Buffer.from(back).equals(data)).toBe(true);
      const eq = s.vm.driver!.info.vectors.eq;
      const trigger = s.device.core.irqs.trigger(eq)!;
      expect(trigger.signals).toBeGreaterThanOrEqual(2);
      expect(s.io.stats.delivered[eq]).toBe(trigger.signals);
      expect(s.vm.driver!.stats.irqCqes).toBe(2);
    });

    it(`SEC ${hw}: AES-128-CBC and HMAC-SHA256 match node:crypto`, () => {
      const s = source('sec', hw);
      const a = s.vm.accel!;
      const key = crypto.randomBytes(16);
      const iv = crypto.randomBytes(16);
      const data = crypto.randomBytes(4096);
      const c = crypto.createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
      expect(Buffer.from(a.encrypt('aes-128-cbc', key, iv, data)).equals(Buffer.concat([c.update(data), c.final()]))).toBe(true);
      const mk = crypto.randomBytes(32);
      expect(Buffer.from(a.hmac('hmac-sha256', mk, data)).equals(crypto.createHmac('sha256', mk).update(data).digest())).toBe(true);
      expect(s.io.stats.delivered[s.vm.driver!.info.vectors.eq]).toBeGreaterThanOrEqual(2);
    });

    it(`HPRE ${hw}: RSA-1024 public and CRT private operations match BigInt modpow`, () => {
      const s = source('hpre', hw);
      const a = s.vm.accel!;
      const m = crypto.randomBytes(127);
      const pub = a.rsa('public', { n: rsa.n, e: rsa.e }, m);
      expect(toBig(pub)).toBe(modPow(toBig(m), rsa.e, rsa.n));
      const priv = a.rsa('private', rsa, pub);
      expect(toBig(priv)).toBe(toBig(m));
      expect(s.vm.driver!.stats.irqCqes).toBe(2);
    });
  }

  it('old hardware (V2) still passes through without migration (merged policy): jobs complete', () => {
    const s = source('zip', 'v2');
    const data = Buffer.from('v2 pass-through '.repeat(100));
    expect(Buffer.from(inflateRawSync(s.vm.accel!.compress(data, 'deflate'))).equals(data)).toBe(true);
  });

  it('shutdown releases the device fd, group, container, eventfds and the RAM mapping', () => {
    const s = createSource({ engine: 'zip', hw: 'v3', workload: false, ramBytes: 16 * 2 ** 20 });
    const fds = s.host.process.fds;
    const before = fds.size;
    s.vm.shutdown();
    expect(fds.get(s.deviceFd)).toBeUndefined();
    expect(fds.get(s.containerFd)).toBeUndefined();
    expect(s.device.core.irqs.msiEnabled).toBe(false);
    // device, group, container and the MSI eventfds are gone
    expect(fds.size).toBeLessThanOrEqual(before - 3 - s.io.msiVectors);
    expect(() => s.host.process.user.copyFromUser(s.vm.ramVaddr, 1)).toThrow(/EFAULT/);
  });
});
