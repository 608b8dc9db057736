/**
 * DirtyLogger (src/drivers/hisi-acc/dirty-log.ts): reports over ranges larger than one
 * harvest chunk (4 GiB of IOVA) must set exactly the report bits of the pages the device
 * wrote, wherever the chunk boundaries fall (uAPI section 5, DMA_LOGGING_REPORT).
 */
import { describe, expect, it } from 'vitest';
import { DirtyLogger } from '../src/drivers/hisi-acc/dirty-log.js';
import { IOMMU_READ, IOMMU_WRITE, IommuDomain } from '../src/iommu/domain.js';
import { SparseMemory } from '../src/mem/sparse-memory.js';
import type { VfioPciCoreDevice } from '../src/vfio/pci-core/core-device.js';

const GiB = 2 ** 30;
const KiB = 1024;

function world() {
  const domain = new IommuDomain({ gaw: 48 });
  const mem = new SparseMemory(GiB);
  // One extent straddling the 4 GiB chunk boundary, one far above it.
  domain.map(4 * GiB - 64 * KiB, 128 * KiB, mem, 0, IOMMU_READ | IOMMU_WRITE);
  domain.map(40 * GiB, 64 * KiB, mem, 256 * KiB, IOMMU_READ | IOMMU_WRITE);
  const port = domain.port('vf');
  const logger = new DirtyLogger();
  const core = { iommuDomain: domain } as unknown as VfioPciCoreDevice;
  const write = (iova: number) => expect(port.write(iova, new Uint8Array([1, 2, 3]))).toBe(true);
  return { logger, core, write };
}

function setBits(out: Uint8Array): number[] {
  const bits: number[] = [];
  out.forEach((b, i) => { for (let k = 0; k < 8; k++) if (b & (1 << k)) bits.push(i * 8 + k); });
  return bits;
}

describe('DirtyLogger reports across harvest chunks', () => {
  it('8 KiB report pages over 64 GiB: the pages on both sides of 4 GiB and one at 40 GiB', () => {
    const { logger, core, write } = world();
    expect(logger.start(core, [{ iova: 0, length: 2 ** 36 }], 8 * KiB)).toBe(8 * KiB);
    write(4 * GiB - 8 * KiB);
    write(4 * GiB + 4 * KiB);
    write(40 * GiB + 60 * KiB);
    const out = new Uint8Array(2 ** 36 / (8 * KiB) / 8);
    logger.report(0, 2 ** 36, 8 * KiB, out);
    // Hand-computed: (4 GiB - 8 KiB) / 8 KiB = 524287, (4 GiB + 4 KiB) / 8 KiB = 524288,
    // (40 GiB + 60 KiB) / 8 KiB = 5242880 + 7.
    expect(setBits(out)).toEqual([524287, 524288, 5242887]);
    // Read-and-clear: a second report of the same range is empty.
    out.fill(0);
    logger.report(0, 2 ** 36, 8 * KiB, out);
    expect(setBits(out)).toEqual([]);
  });

  it('1 GiB report pages over 1 TiB with a 128-byte bitmap (the fuzz repro) and a report starting mid-page', () => {
    const { logger, core, write } = world();
    logger.start(core, [{ iova: 0, length: 2 ** 40 }], GiB);
    write(4 * GiB - 4 * KiB);
    write(4 * GiB);
    write(40 * GiB);
    const out = new Uint8Array(128);
    logger.report(0, 2 ** 40, GiB, out);
    expect(setBits(out)).toEqual([3, 4, 40]);
    // A report whose iova is not 4 KiB-page aligned counts bits from its own start.
    write(4 * GiB - 4 * KiB);
    const small = new Uint8Array(8);
    logger.report(4 * GiB - 6 * KiB, 8 * KiB, 2 * KiB, small);
    // The written page [4 GiB - 4 KiB, 4 GiB) covers report pages 1..2 (2 KiB pages from 4 GiB - 6 KiB).
    expect(setBits(small)).toEqual([1, 2]);
  });
});
