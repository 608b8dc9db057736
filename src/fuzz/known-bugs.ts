/**
 * Bugs the campaigns found in other modules and that are not fixed yet. Each entry matches
 * its violations precisely; a matching violation is still printed (with its reproduction)
 * but does not fail the run. Remove an entry when the bug is fixed: the invariant then fails
 * the run again if the bug comes back. Nothing here weakens a check.
 */
import type { KnownBug } from './runner.js';

export interface KnownBugEntry extends KnownBug {
  /** Campaigns whose runs hit it. */
  readonly campaigns: readonly string[];
}

/** The entries that apply to one campaign. */
export function knownBugsOf(campaign: string): KnownBugEntry[] {
  return KNOWN_BUGS.filter((b) => b.campaigns.includes(campaign));
}

export const KNOWN_BUGS: readonly KnownBugEntry[] = [
  {
    id: 'dmalog-report-unbounded-scratch',
    campaigns: ['dmalog'],
    where: 'src/drivers/hisi-acc/dirty-log.ts DirtyLogger.harvest (called per 2^21-bit window by src/vfio/pci-core/feature.ts loggingReport)',
    summary:
      'a DMA_LOGGING_REPORT allocates (and keeps, as the logger\'s scratch) one bit per 4 KiB page of the whole requested ' +
      'range, clipped only to the 48-bit aperture, whatever the report page size and whatever is mapped: a report at 2 MiB ' +
      'or 1 GiB pages over a logged 2^40-byte range (a 32 KiB or 128-byte user bitmap) holds 32 MiB and walks 2^28 bits; ' +
      'over 2^47 bytes it asks for 4 GiB, which fails with a RangeError escaping the ioctl or exhausts host memory. Linux ' +
      'bounds this work (iova_bitmap pins a chunk of the user bitmap at a time, the tracker is read where IOVA is mapped): ' +
      'harvest per mapped extent of the domain, or in bounded chunks of the range, and drop the scratch after the call',
    matches: (v) => v.kind === 'resource' && /^DMA_LOGGING_REPORT held \d+ MiB of kernel memory after the call for a \d+-byte bitmap/.test(v.message),
  },
];
