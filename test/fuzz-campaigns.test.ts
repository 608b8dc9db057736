/**
 * Fixed-seed slices of every fuzz campaign (issue 6 item 1, `npm run fuzz` runs the full
 * ones). Each slice must end with zero invariant violations outside the listed known bugs,
 * and must show that it exercised the code: many distinct errnos, successes, every entry
 * point, witness jobs that completed (verified with node:zlib inside the campaign), and for
 * the hostile guest, errors that surfaced the way hardware reports them. A fuzzer that
 * silently did nothing fails these.
 */
import { describe, expect, it } from 'vitest';
import { guestCampaign } from '../src/fuzz/guest-campaign.js';
import { ioctlCampaign } from '../src/fuzz/ioctl-campaign.js';
import { migfsmCampaign } from '../src/fuzz/migfsm-campaign.js';
import { regionCampaign } from '../src/fuzz/region-campaign.js';
import { resumeCampaign } from '../src/fuzz/resume-campaign.js';
import { type CampaignResult, reproCommand, runCampaign } from '../src/fuzz/runner.js';

function noViolations(r: CampaignResult): void {
  const text = r.violations.map((v) => `${v.kind}: ${v.message}\n  at ${v.call}\n  ${reproCommand(v)}`).join('\n');
  expect(r.violations, text).toHaveLength(0);
}

function outcomes(r: CampaignResult, re: RegExp): string[] {
  return Object.keys(r.outcomes).filter((k) => re.test(k));
}

describe('fuzz campaign slices (seed 1)', () => {
  it('ioctl: container, group, device and eventfd fds; many errnos, Linux errno classes, witnesses intact', () => {
    const r = runCampaign(ioctlCampaign, { inputs: 3000, seed: 1, shrink: false });
    noViolations(r);
    for (const e of ['container fd ioctl', 'group fd ioctl', 'device fd ioctl', 'eventfd', 'open/close']) {
      expect(r.entryPoints[e] ?? 0, e).toBeGreaterThan(200);
    }
    expect(Object.keys(r.errnos).length).toBeGreaterThanOrEqual(8);
    for (const e of ['EBADF', 'EINVAL', 'ENOTTY', 'EFAULT', 'EAGAIN']) expect(r.errnos[e] ?? 0, e).toBeGreaterThan(0);
    expect(r.successes).toBeGreaterThan(500);
    // deep states were reached: real mappings, device fds, DMA-dirty queries, interrupt setup
    expect(r.outcomes['container PCI_HOT_RESET|IOMMU_MAP_DMA -> ok'] ?? 0).toBeGreaterThan(20);
    expect(r.outcomes['group GROUP_GET_DEVICE_FD -> ok'] ?? 0).toBeGreaterThan(5);
    expect(outcomes(r, /^device DEVICE_SET_IRQS -> ok$/)).toHaveLength(1);
    expect(outcomes(r, /^container DEVICE_FEATURE\|IOMMU_DIRTY_PAGES -> ok$/)).toHaveLength(1);
    expect(r.outcomes['witness ok: PF']).toBe(r.checkpoints);
    expect(r.outcomes['witness ok: VF2 (vfio)']).toBe(r.checkpoints);
    expect(r.outcomes['witness ok: VF3']).toBe(r.checkpoints);
  });

  it('regions: config and BAR accesses through the fd, mmaps and the raw function', () => {
    const r = runCampaign(regionCampaign, { inputs: 4000, seed: 1, shrink: false });
    noViolations(r);
    for (const e of ['device fd config read/write', 'device fd BAR/region read/write', 'device fd mmap', 'raw config access', 'raw MMIO access']) {
      expect(r.entryPoints[e] ?? 0, e).toBeGreaterThan(300);
    }
    expect(r.errnos.EINVAL ?? 0).toBeGreaterThan(0);
    expect(r.successes).toBeGreaterThan(2000);
    expect(outcomes(r, /^fd region 7 (read|write) -> full$/)).toHaveLength(2);
    expect(outcomes(r, /^fd region 2 (read|write) -> full$/)).toHaveLength(2);
    expect(r.outcomes['mapped access faulted'] ?? 0).toBeGreaterThan(0);
    expect(r.outcomes['mapped access ok'] ?? 0).toBeGreaterThan(0);
    expect(outcomes(r, /^raw config access refused: EINVAL$/)).toHaveLength(1);
    expect(r.outcomes['witness ok: VF2 (vfio)']).toBe(r.checkpoints);
  });

  it('guest: a hostile VF1 never breaks the model or the PF, VF2 and VF3; its errors surface in hardware', () => {
    const r = runCampaign(guestCampaign, { inputs: 2500, seed: 1, shrink: false });
    noViolations(r);
    for (const e of ['hostile mb', 'hostile db', 'hostile sqe', 'hostile mmio', 'hostile mem']) {
      expect(r.entryPoints[e] ?? 0, e).toBeGreaterThan(150);
    }
    // statuses, IOMMU faults and the QM's own error counters all showed up
    expect(outcomes(r, /^mailbox cmd .* status [1-9]/).length).toBeGreaterThanOrEqual(3);
    expect(outcomes(r, /^mailbox cmd .* status 0$/).length).toBeGreaterThanOrEqual(5);
    expect(outcomes(r, /^iommu fault /).length).toBeGreaterThanOrEqual(1);
    expect(r.outcomes['qm queue engineErrors'] ?? 0).toBeGreaterThan(0);
    expect(outcomes(r, /^qm doorbell (badIndex|noContext|badCmd)$/).length).toBeGreaterThanOrEqual(2);
    expect(r.outcomes['reinit ok'] ?? 0).toBeGreaterThan(0);
    for (const w of ['PF', 'VF2 (vfio)', 'VF3']) expect(r.outcomes[`witness ok: ${w}`], w).toBe(r.checkpoints);
  });

  it('migfsm: v2 transitions on a hisi-acc-vfio-pci VF follow the spec table, data fds behave, the guest survives', () => {
    const r = runCampaign(migfsmCampaign, { inputs: 4000, seed: 1, shrink: false });
    noViolations(r);
    for (const e of ['migration set', 'migration read', 'migration write', 'migration reset', 'job']) {
      expect(r.entryPoints[e] ?? 0, e).toBeGreaterThan(100);
    }
    // successful arcs out of STOP, RUNNING, STOP_COPY, RESUMING and PRE_COPY, and refused ones
    for (const from of [1, 2, 3, 4, 6]) expect(outcomes(r, new RegExp(`^set ${from}->[0-9]: ok$`)).length, `from ${from}`).toBeGreaterThan(0);
    expect(outcomes(r, /^set [0-9]->(0|5|7|invalid): EINVAL$/).length).toBeGreaterThan(3);
    for (const e of ['EINVAL', 'ENODEV', 'EBADF', 'ENOMEM']) expect(r.errnos[e] ?? 0, e).toBeGreaterThan(0);
    expect(r.outcomes['read save fd (pre-copy): data'] ?? 0).toBeGreaterThan(0);
    expect(r.outcomes['guest job ok'] ?? 0).toBeGreaterThan(10);
    for (const w of ['PF', 'VF3 (hisi-acc-vfio-pci)']) expect(r.outcomes[`witness ok: ${w}`], w).toBe(r.checkpoints);
  });

  it('resume: mutated streams are refused where the spec says (ENOMEM, EFAULT, EINVAL) and loaded otherwise', () => {
    const r = runCampaign(resumeCampaign, { inputs: 1500, seed: 1, shrink: false });
    noViolations(r);
    expect(r.entryPoints['mutated stream']).toBe(1500);
    for (const o of ['resume write: ok', 'resume write: EFAULT', 'resume write: ENOMEM', 'load of a full state: ok', 'load of match data: ok', 'load of a bad length: EINVAL']) {
      expect(r.outcomes[o] ?? 0, o).toBeGreaterThan(5);
    }
    for (const w of ['PF', 'VF3 (hisi-acc-vfio-pci)', 'source VF1']) expect(r.outcomes[`witness ok: ${w}`], w).toBe(r.checkpoints);
  });
});
