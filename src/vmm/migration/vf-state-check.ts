/**
 * Is the destination VF in the state the source saved? Compared through the vendor
 * driver's debug view (hisi-acc-vfio-pci.md section 9), never by reaching into the model:
 *
 * - the driver's migf_data on the destination must be byte-for-byte the acc_vf_data the
 *   source produced (what the stream carried is what the driver accepted);
 * - after RESUMING -> STOP (v2), the VF's registers read live from the device must hold the
 *   saved values: the match fields that must agree across hosts (qp_num, dev_id,
 *   que_iso_cfg), the interrupt masks, page size, EQC/AEQC contexts and the SQC/CQC bases.
 *   qp_base is per host and IFC interrupt state is reinitialised by the load
 *   (qm_dev_cmd_init), so neither is compared.
 *
 * v1 loads and starts the device in one step, so its registers cannot be read before the
 * guest may run; only the migf comparison applies there.
 */
import { decodeAccVfData, type AccVfData, ACC_VF_DATA_SIZE } from '../../drivers/hisi-acc/acc-vf-data.js';
import { debugView } from '../../drivers/hisi-acc/debug-view.js';
import { KernelError } from '../../uapi/errno.js';
import type { VfioFile } from '../../vfio/fd.js';
import { VfioDeviceFile } from '../../vfio/pci-core/device-file.js';
import type { VfStateCheck } from './report-types.js';

/** Fields of the 144-byte register dump that must survive the move (the DMA bases are past the dump). */
const SCALARS = ['qp_num', 'dev_id', 'que_iso_cfg', 'vf_qm_state', 'aeq_int_mask', 'eq_int_mask', 'page_size'] as const;
const ARRAYS = ['qm_eqc_dw', 'qm_aeqc_dw'] as const;

function hex(v: number | bigint): string {
  return `0x${v.toString(16)}`;
}

/** Field differences between a saved state and a state read back. */
export function diffAccVfData(saved: AccVfData, now: AccVfData, full: boolean): string[] {
  const out: string[] = [];
  const fields = full ? SCALARS : (['qp_num', 'dev_id', 'que_iso_cfg'] as const);
  for (const f of fields) {
    if (saved[f] !== now[f]) out.push(`${f}: ${hex(saved[f])} vs ${hex(now[f])}`);
  }
  if (full) {
    for (const f of ARRAYS) {
      saved[f].forEach((v, i) => {
        if (now[f][i] !== v) out.push(`${f}[${i}]: ${hex(v)} vs ${hex(now[f][i] ?? 0)}`);
      });
    }
  }
  return out;
}

function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Checks destination device `file` against `sent`, the device's migration data as the
 * source produced it. `live`: the device is loaded and stopped, so its registers may be read.
 */
export function checkVfState(name: string, file: VfioFile, sent: Uint8Array, live: boolean): VfStateCheck {
  const res: VfStateCheck = { name, ok: false, source: 'unavailable', mismatches: [], note: '' };
  if (!(file instanceof VfioDeviceFile)) {
    res.note = 'not a vfio-pci device fd of this process: no debug view';
    return res;
  }
  let saved: AccVfData;
  try {
    saved = decodeAccVfData(sent).data;
  } catch (e) {
    res.note = `the sent device data is not an acc_vf_data (${(e as Error).message})`;
    return res;
  }
  let view;
  try {
    view = debugView(file.core);
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
    res.note = `debug view failed: ${e.message}`;
    return res;
  }
  if (!view.migf || view.migf.side !== 'resume') {
    res.note = 'the driver has no resumed migration data';
    return res;
  }
  res.source = 'driver-migf';
  if (!equalBytes(view.migf.bytes, sent)) {
    res.mismatches.push(`migf_data: the driver holds ${view.migf.bytes.length} bytes that differ from the ${sent.length} bytes sent`);
  }
  if (live && sent.length === ACC_VF_DATA_SIZE) {
    if (view.registers.source !== 'live' || !view.registers.bytes) {
      res.mismatches.push(`registers not readable after load: ${view.registers.note}`);
    } else {
      res.source = 'live-registers';
      // the live dump is the first 144 bytes of an acc_vf_data; pad it to decode it
      const full = new Uint8Array(ACC_VF_DATA_SIZE);
      full.set(view.registers.bytes);
      res.mismatches.push(...diffAccVfData(saved, decodeAccVfData(full).data, true));
    }
  }
  res.ok = res.mismatches.length === 0;
  res.note = res.source === 'live-registers'
    ? 'driver migf_data equals the sent state; live registers after load match it'
    : live ? 'driver migf_data equals the sent state (registers: match data only)' : 'driver migf_data equals the sent state (v1: the device starts as it loads, registers not read)';
  if (!res.ok) res.note = `${res.mismatches.length} difference(s)`;
  return res;
}
