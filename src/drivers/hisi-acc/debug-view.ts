/**
 * The driver's debugfs, as a value (hisi-acc-vfio-pci.md section 9): the live registers of
 * the VF (the first 144 bytes of an acc_vf_data: match data, registers, EQC/AEQC), the last
 * migration data the driver produced or accepted (migf_data), decoded, and whether the
 * mailbox is ready.
 *
 * The VF's registers belong to the guest while it may run, so they are read only when the
 * device is open and neither RUNNING nor PRE_COPY (nor in the middle of a transition);
 * otherwise the view shows the values last read and says so. The mailbox state is a single
 * read of the busy bit, under the same rule.
 */
import type { HostPciDevice } from '../../host/pci-device.js';
import { KernelError } from '../../uapi/errno.js';
import { VFIO_DEVICE_STATE_PRE_COPY, VFIO_DEVICE_STATE_RUNNING, VfioMigState } from '../../uapi/vfio.js';
import { VfioPciCoreDevice } from '../../vfio/pci-core/core-device.js';
import {
  ACC_VF_STATE_DUMP_SIZE, type AccVfData, type AccVfField, accVfLayout,
} from './acc-vf-data.js';
import { hisiAccStateOf } from './driver.js';
import { QM_MB_BUSY, QM_MB_CMD_SEND_BASE } from './regs.js';

export type RegsSource = 'live' | 'last-known' | 'none';

export interface HisiAccDebugView {
  name: string;
  opened: boolean;
  migState: number;
  migStateName: string;
  vfQmState: number;
  registers: {
    source: RegsSource;
    note: string;
    /** Simulated time of the read. */
    time: number | null;
    bytes: Uint8Array | null;
    fields: Record<string, string | string[]> | null;
  };
  migf: {
    side: 'save' | 'resume';
    length: number;
    time: number;
    bytes: Uint8Array;
    fields: Record<string, string | string[]>;
  } | null;
  /** null when the mailbox may not be looked at now. */
  mailboxReady: boolean | null;
  text: string;
}

function hex(v: number | bigint, width: number): string {
  return `0x${v.toString(16).padStart(width, '0')}`;
}

/** Field values of a struct byte image, formatted by size, up to `limit` bytes. */
function fieldsOf(bytes: Uint8Array, layout: readonly AccVfField[], limit: number): Record<string, string | string[]> {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out: Record<string, string | string[]> = {};
  for (const f of layout) {
    if (f.offset + f.size * f.count > limit) continue;
    const vals: string[] = [];
    for (let i = 0; i < f.count; i++) {
      const o = f.offset + i * f.size;
      vals.push(f.size === 8 ? hex(v.getBigUint64(o, true), 16) : f.size === 4 ? hex(v.getUint32(o, true), 8) : hex(v.getUint16(o, true), 4));
    }
    out[f.name] = f.count === 1 ? vals[0]! : vals;
  }
  return out;
}

/** seq_hex_dump(DUMP_PREFIX_OFFSET, 16 per row, 1-byte groups). */
export function hexDump(prefix: string, bytes: Uint8Array): string {
  const rows: string[] = [];
  for (let o = 0; o < bytes.length; o += 16) {
    const row = Array.from(bytes.subarray(o, o + 16), (b) => b.toString(16).padStart(2, '0')).join(' ');
    rows.push(`${prefix}${o.toString(16).padStart(8, '0')}: ${row}`);
  }
  return rows.join('\n');
}

function layoutFor(d: AccVfData): readonly AccVfField[] {
  return accVfLayout(d.kind);
}

/** The debug view of a VF bound to hisi-acc-vfio-pci (a host device or its vfio core device). */
export function debugView(target: HostPciDevice | VfioPciCoreDevice): HisiAccDebugView {
  const core = target instanceof VfioPciCoreDevice ? target : target.drvdata instanceof VfioPciCoreDevice ? target.drvdata : undefined;
  const st = core ? hisiAccStateOf(core) : undefined;
  const name = core?.name ?? (target as HostPciDevice).bdf;
  const view: HisiAccDebugView = {
    name,
    opened: false,
    migState: 0,
    migStateName: 'n/a',
    vfQmState: 0,
    registers: { source: 'none', note: 'not bound to hisi-acc-vfio-pci with migration support', time: null, bytes: null, fields: null },
    migf: null,
    mailboxReady: null,
    text: '',
  };
  if (!st) {
    view.text = `${name}: ${view.registers.note}`;
    return view;
  }
  const dev = st.dev;
  view.opened = dev.opened;
  view.migState = dev.migState;
  view.migStateName = Object.entries(VfioMigState).find(([, v]) => v === dev.migState)?.[0] ?? String(dev.migState);
  view.vfQmState = dev.vfQmState;
  const guestMayRun = dev.migState === VFIO_DEVICE_STATE_RUNNING || dev.migState === VFIO_DEVICE_STATE_PRE_COPY;
  let why = '';
  if (!dev.opened) why = 'device not opened';
  else if (dev.inTransition) why = 'a state transition is in progress';
  else if (guestMayRun) why = `the guest may be running (${view.migStateName})`;
  if (why === '') {
    try {
      dev.readRegsNow();
      view.registers.source = 'live';
      view.registers.note = 'read now';
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
      why = `read failed: ${e.message}`;
    }
    try {
      view.mailboxReady = dev.withRegs((regs) => (regs.read(QM_MB_CMD_SEND_BASE) & QM_MB_BUSY) === 0);
    } catch (e) {
      if (!(e instanceof KernelError)) throw e;
    }
  }
  const regs = dev.lastRegs;
  if (view.registers.source !== 'live') {
    view.registers.source = regs ? 'last-known' : 'none';
    view.registers.note = regs ? `last known values (not read now: ${why})` : `no values known (${why})`;
  }
  if (regs) {
    const bytes = regs.bytes.subarray(0, ACC_VF_STATE_DUMP_SIZE);
    view.registers.bytes = bytes.slice();
    view.registers.time = regs.time;
    view.registers.fields = fieldsOf(bytes, accVfLayout('v2'), ACC_VF_STATE_DUMP_SIZE);
  }
  const m = dev.lastMigf;
  if (m) view.migf = { side: m.side, length: m.length, time: m.time, bytes: m.bytes.slice(), fields: fieldsOf(m.bytes, layoutFor(m.data), m.length) };
  const lines = [
    `device: ${name}`,
    `opened: ${view.opened}`,
    `migration state: ${view.migStateName}`,
    `guest driver load: ${view.vfQmState}`,
    `registers (${view.registers.source}): ${view.registers.note}`,
  ];
  if (view.registers.bytes) lines.push(hexDump('Dev Data:', view.registers.bytes));
  if (view.registers.fields) for (const [k, v] of Object.entries(view.registers.fields)) lines.push(`  ${k}: ${Array.isArray(v) ? v.join(' ') : v}`);
  if (view.migf) {
    lines.push(`migf_data (${view.migf.side}, ${view.migf.length} bytes):`);
    lines.push(hexDump('Mig Data:', view.migf.bytes));
    for (const [k, v] of Object.entries(view.migf.fields)) lines.push(`  ${k}: ${Array.isArray(v) ? v.join(' ') : v}`);
  } else {
    lines.push('migf_data: none');
  }
  lines.push(`mailbox: ${view.mailboxReady === null ? 'not checked (VF registers not accessible now)' : view.mailboxReady ? 'ready' : 'busy'}`);
  view.text = lines.join('\n');
  return view;
}
