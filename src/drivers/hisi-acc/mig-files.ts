/**
 * The resuming data fd of hisi-acc-vfio-pci: at most sizeof(acc_vf_data) bytes (ENOMEM
 * beyond, before anything else), and the match check run once, as soon as the first
 * QM_MATCH_SIZE bytes are in. A chunk that fails the check is refused and not kept.
 */
import { MigrationResumeFile } from '../../vfio/pci-core/mig-file.js';
import { ACC_VF_DATA_SIZE, QM_MATCH_SIZE } from './acc-vf-data.js';

export interface MatchChecker {
  readonly matchDone: boolean;
  /** Checks the match data, the first 40 bytes of `head`; throws the errno the write must fail with. */
  checkMatch(head: Uint8Array): void;
}

export class HisiAccResumeFile extends MigrationResumeFile {
  constructor(private readonly checker: MatchChecker) {
    super(ACC_VF_DATA_SIZE);
  }

  protected override onData(chunk: Uint8Array, offset: number): void {
    if (this.checker.matchDone || offset + chunk.length < QM_MATCH_SIZE) return;
    // The usual case, the whole head in the first chunk, needs no copy.
    if (offset === 0) {
      this.checker.checkMatch(chunk);
      return;
    }
    const head = new Uint8Array(QM_MATCH_SIZE);
    const have = Math.min(offset, QM_MATCH_SIZE);
    head.set(this.received.subarray(0, have));
    head.set(chunk.subarray(0, QM_MATCH_SIZE - have), have);
    this.checker.checkMatch(head);
  }
}
