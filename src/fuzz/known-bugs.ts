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
    id: 'eq-doorbell-livelock',
    campaigns: ['guest', 'migfsm'],
    where: 'src/guest/qm-vf-driver.ts QmVfDriver.bottomHalf with src/hw/qm/qm-function.ts QmFunction.eqDoorbell',
    summary:
      'when the device holds an EQC whose tail is not its head while the guest ring sees no entry of the current phase (a ' +
      'hostile guest loading its own EQC, or a stale saved state loaded under a running guest), every EQ ' +
      'doorbell re-raises the EQ interrupt synchronously (latency 0) inside the MMIO write, the MSI handler re-arms the ' +
      'bottom half, and its unbounded while(pendingVectors) loop rings the doorbell again without consuming anything: the ' +
      'simulation never returns from that MMIO write. Bound the bottom half to a budget of passes and reschedule, and ' +
      'deliver re-raised interrupts through the scheduler with a non-zero delay so simulated time moves',
    matches: (v) => v.kind === 'livelock' && v.message.endsWith('delivered to the VF1 guest within one input'),
  },
  {
    id: 'paused-without-guest',
    campaigns: ['migfsm'],
    where: 'src/drivers/hisi-acc/device.ts HisiAccVfDevice.start / stopOrRestart (and src/drivers/hisi-acc/vf-qm.ts stopDevice)',
    summary:
      'a VF stopped (RUNNING->STOP or PRE_COPY->STOP_COPY, i.e. PAUSE_QM) while its guest driver is not loaded, e.g. after ' +
      'a reset, then set back to RUNNING, stays paused: start() skips a QM_NOT_READY function, so nothing ever un-pauses it ' +
      'and a guest driver loaded afterwards never completes a job (a VM stopped and continued during boot, or a migration ' +
      'aborted before the guest driver loaded, loses its accelerator). RUNNING after STOP must leave a working device: undo ' +
      'the pause in start() even when no guest state is to be resumed, or do not pause a function without a loaded driver',
    matches: (v) => v.kind === 'victim' && v.message.startsWith('VF1 guest job failed: ETIMEDOUT') && v.message.endsWith('(stopped and restarted while no guest driver was loaded)'),
  },
];
