/**
 * The destination -> source direction of the migration connection (QEMU's "return path"):
 * newline-separated JSON messages. The destination sends one `result` message when it has
 * started the guest or given up; the source keeps its guest paused until it has that
 * answer. A failure result gives the guest back to the source. No result at all (the
 * connection broke or ended without one) means different things depending on when: before
 * the destination took the whole stream, the guest stays on the source; after, the
 * destination may be running it, so the source stays stopped (handover 'unconfirmed',
 * source.ts). A destination that refuses the stream early sends its result at once, so the
 * source stops sending and recovers instead of finishing a migration nobody will take.
 */
import type { Transport } from '../transport/types.js';
import type { DestinationReport } from './report-types.js';

export interface ResultMessage {
  t: 'result';
  report: DestinationReport;
}

export type ReturnMessage = ResultMessage;

const enc = new TextEncoder();
/** Largest message accepted (a result is a few KiB). */
const MAX_LINE = 1 << 20;

export function encodeMessage(m: ReturnMessage): Uint8Array {
  return enc.encode(JSON.stringify(m) + '\n');
}

/**
 * Reads the return path of `link` (the only consumer of its receive side) in the
 * background. `result` settles with the destination's report, or null when the connection
 * ended or broke without one (the error is kept in `error`).
 */
export class ReturnPathReader {
  readonly result: Promise<DestinationReport | null>;
  /** Set as soon as a result arrives (the source polls it between steps). */
  report: DestinationReport | null = null;
  error: unknown = null;
  private settle!: (r: DestinationReport | null) => void;

  constructor(link: Transport) {
    this.result = new Promise((resolve) => {
      this.settle = resolve;
    });
    void this.run(link);
  }

  private async run(link: Transport): Promise<void> {
    const dec = new TextDecoder();
    let text = '';
    try {
      for await (const chunk of link) {
        text += dec.decode(chunk, { stream: true });
        if (text.length > MAX_LINE) throw new Error('return path message too long');
        let nl: number;
        while ((nl = text.indexOf('\n')) >= 0) {
          const line = text.slice(0, nl);
          text = text.slice(nl + 1);
          this.onLine(line);
        }
      }
    } catch (e) {
      this.error = e;
    }
    this.settle(this.report);
  }

  private onLine(line: string): void {
    if (line.trim() === '' || this.report) return;
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      throw new Error('return path message is not JSON');
    }
    const msg = m as Partial<ResultMessage>;
    if (msg.t === 'result' && msg.report && typeof msg.report === 'object' && typeof msg.report.ok === 'boolean') {
      this.report = msg.report;
      this.settle(this.report);
    }
  }
}
