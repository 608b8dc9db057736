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
];
