import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as regs from '../src/hw/pci/regs.js';

// Independent reference: the kernel's uapi header on this machine (Linux 6.1).
function headerDefines(): Map<string, number> {
  const text = readFileSync('/usr/include/linux/pci_regs.h', 'utf8');
  const out = new Map<string, number>();
  for (const m of text.matchAll(/^#define\s+(PCI_\w+)\s+([^\s/]+)/gm)) {
    const tok = m[2]!.replace(/^\((.*)\)$/, '$1').replace(/U?L?$/i, '');
    if (/^(0x[0-9a-f]+|\d+)$/i.test(tok)) out.set(m[1]!, Number(tok));
  }
  return out;
}

describe('PCI register constants match linux/pci_regs.h', () => {
  const header = headerDefines();
  const ours = Object.entries(regs).filter(([k, v]) => k.startsWith('PCI_') && typeof v === 'number') as [string, number][];

  it('every constant named after a Linux define has the Linux value', () => {
    const checked: string[] = [];
    for (const [name, value] of ours) {
      if (!header.has(name)) continue;
      expect({ name, value }).toEqual({ name, value: header.get(name) });
      checked.push(name);
    }
    expect(checked.length).toBeGreaterThan(100);
  });

  it('only the two size helpers are not Linux names', () => {
    expect(ours.map(([k]) => k).filter((k) => !header.has(k)).sort()).toEqual(['PCI_EXP_V2_SIZEOF', 'PCI_MSI_64_PVM_SIZEOF']);
  });

  it('extended capability header packs id/version/next as PCI_EXT_CAP_ID/VER/NEXT decode them', () => {
    const h = regs.extCapHeader(0x10, 1, 0x140);
    expect(h & 0xffff).toBe(0x10);
    expect((h >>> 16) & 0xf).toBe(1);
    expect((h >>> 20) & 0xffc).toBe(0x140);
    expect(h).toBe(0x14010010);
  });
});
