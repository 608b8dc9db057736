/**
 * How the PF driver splits its queues over VFs when SR-IOV is enabled (qm-hardware.md
 * section 4, `qm_vf_q_assign`): the PF keeps [0, pf_q_num); the remaining queues are
 * divided by the VF count; VFs are served from VF n down to VF 1 with bases growing from
 * pf_q_num, so the highest VF gets the lowest base. VF n takes the whole division remainder
 * if that stays within the per-function maximum; otherwise the remainder is spread one
 * queue at a time over the VFs served first. Every VF is capped at the maximum.
 */
import { fail } from '../../uapi/errno.js';

export interface VfQueueSlice {
  /** VF number (1-based function number in the VFT). */
  vf: number;
  base: number;
  num: number;
}

/** The slices in programming order (VF n first). EINVAL if there are fewer queues than VFs. */
export function planVfQueues(ctrlQpNum: number, pfQNum: number, maxQpNum: number, numVfs: number): VfQueueSlice[] {
  if (!Number.isInteger(numVfs) || numVfs <= 0) fail('EINVAL', `VF count ${numVfs}`);
  const pool = ctrlQpNum - pfQNum;
  if (pool < numVfs) fail('EINVAL', `${pool} queues cannot serve ${numVfs} VFs`);
  const each = Math.floor(pool / numVfs);
  let remain = pool % numVfs;
  let base = pfQNum;
  const out: VfQueueSlice[] = [];
  for (let vf = numVfs; vf > 0; vf--) {
    let num: number;
    if (vf === numVfs && each + remain <= maxQpNum) {
      num = each + remain;
      remain = 0;
    } else if (remain > 0) {
      num = each + 1;
      remain--;
    } else {
      num = each;
    }
    num = Math.min(num, maxQpNum);
    out.push({ vf, base, num });
    base += num;
  }
  return out;
}
