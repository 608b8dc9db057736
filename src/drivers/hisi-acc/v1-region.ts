/**
 * The v1 migration protocol of the RFC (hisi-acc-vfio-pci.md section 7, uAPI section 4): a
 * device-specific region VFIO_REGION_TYPE_MIGRATION(_DEPRECATED)/SUBTYPE_MIGRATION holding
 * `vfio_device_migration_info` (32 bytes) followed by a data window of sizeof(acc_vf_data),
 * read/write, never mmap.
 *
 * Header rules: device_state must be accessed with 4 bytes (EFAULT); writing the current
 * state does nothing; an invalid state is EINVAL and leaves the state alone. pending_bytes
 * and data_offset are read-only 8-byte fields (a write is EFAULT, another size EINVAL) —
 * data_offset stays at 32, unlike the RFC, which let user space move it past the buffer.
 * reserved reads 0. data_size is read while saving; written while resuming it commits the
 * bytes put in the window, and the first commit of at least QM_MATCH_SIZE bytes runs the
 * match check. Data accesses: count 0 or an offset inside the header that is no field is
 * EINVAL; counts are clipped at the region end.
 *
 * Iterations follow the uAPI: reading data_offset prepares a chunk (everything pending),
 * data_size tells its size, and the next read of pending_bytes retires it.
 *
 * Actions by target state, with the RFC's two bugs fixed (STOP -> RUNNING now starts the
 * device, and leaving SAVING for RUNNING restarts the VF):
 * - SAVING|RUNNING (from RUNNING): match data from the PF; pending = data_size = 40.
 * - SAVING: stop the device if it runs and save (section 4); pending = data_size = length.
 * - STOP: after saving, the queues are restarted (the RFC's behaviour); from RUNNING the
 *   device is stopped; from RESUMING nothing happens.
 * - RUNNING: from RESUMING, load (section 5) and start; from anything else, start.
 * - RESUMING: a clean window, the match flag reset.
 */
import { readU32, writeU32, writeU64 } from '../../uapi/codec.js';
import { fail } from '../../uapi/errno.js';
import {
  VFIO_DEVICE_STATE_MASK,
  VFIO_DEVICE_STATE_V1_RESUMING as V1_RESUMING,
  VFIO_DEVICE_STATE_V1_RUNNING as V1_RUNNING,
  VFIO_DEVICE_STATE_V1_SAVING as V1_SAVING,
  VFIO_DEVICE_STATE_V1_STOP as V1_STOP,
  VFIO_DEVICE_STATE_VALID,
  VFIO_REGION_INFO_FLAG_READ,
  VFIO_REGION_INFO_FLAG_WRITE,
  VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED,
  VFIO_REGION_TYPE_MIGRATION_DEPRECATED,
} from '../../uapi/vfio.js';
import type { VfioPciCoreDevice } from '../../vfio/pci-core/core-device.js';
import type { VfioPciDeviceRegion } from '../../vfio/pci-core/ops.js';
import { ACC_VF_DATA_SIZE, QM_MATCH_SIZE, type AccVfData, encodeAccVfData } from './acc-vf-data.js';
import type { HisiAccVfDevice } from './device.js';

export const V1_HEADER_SIZE = 32;
export const V1_REGION_SIZE = V1_HEADER_SIZE + ACC_VF_DATA_SIZE;
const OFF_DEVICE_STATE = 0;
const OFF_RESERVED = 4;
const OFF_PENDING = 8;
const OFF_DATA_OFFSET = 16;
const OFF_DATA_SIZE = 24;

export class V1MigrationRegion implements VfioPciDeviceRegion {
  readonly type = VFIO_REGION_TYPE_MIGRATION_DEPRECATED;
  readonly subtype = VFIO_REGION_SUBTYPE_MIGRATION_DEPRECATED;
  readonly size = V1_REGION_SIZE;
  readonly flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;

  deviceState = V1_RUNNING;
  private readonly buf = new Uint8Array(ACC_VF_DATA_SIZE);
  /** Bytes of `buf` holding data (saving: produced; resuming: committed). */
  private bufLen = 0;
  private pending = 0;
  /** The chunk prepared by a data_offset read: [chunkStart, chunkStart + chunkSize) of buf. */
  private chunkStart = 0;
  private chunkSize = 0;
  private prepared = false;
  private match: AccVfData | null = null;

  constructor(private readonly dev: HisiAccVfDevice) {
    dev.onResetExtra = () => this.reset();
  }

  /** A function reset: back to RUNNING with nothing pending. */
  reset(): void {
    this.deviceState = V1_RUNNING;
    this.clearData();
  }

  private clearData(): void {
    this.buf.fill(0);
    this.bufLen = 0;
    this.pending = 0;
    this.prepared = false;
    this.chunkSize = 0;
    this.chunkStart = 0;
    this.match = null;
  }

  rw(_core: VfioPciCoreDevice, b: Uint8Array, offset: number, write: boolean): number {
    if (b.length === 0) fail('EINVAL', 'zero-length access');
    if (offset >= V1_REGION_SIZE) fail('EINVAL', `offset ${offset} beyond the migration region`);
    if (offset >= V1_HEADER_SIZE) return this.dataRw(b, offset, write);
    switch (offset) {
      case OFF_DEVICE_STATE:
        if (b.length !== 4) fail('EFAULT', 'device_state is accessed with 4 bytes');
        if (write) this.setDeviceState(readU32(b, 0));
        else writeU32(b, 0, this.deviceState);
        return 4;
      case OFF_RESERVED:
        if (write) fail('EINVAL', 'reserved is not writable');
        b.fill(0, 0, Math.min(b.length, 4));
        return Math.min(b.length, 4);
      case OFF_PENDING:
        if (b.length !== 8) fail('EINVAL', 'pending_bytes is 8 bytes');
        if (write) fail('EFAULT', 'pending_bytes is read-only');
        if (this.prepared) {
          this.pending -= this.chunkSize;
          this.prepared = false;
          this.chunkSize = 0;
        }
        writeU64(b, 0, this.pending);
        return 8;
      case OFF_DATA_OFFSET:
        if (b.length !== 8) fail('EINVAL', 'data_offset is 8 bytes');
        if (write) fail('EFAULT', 'data_offset is read-only');
        if ((this.deviceState & V1_SAVING) !== 0 && !this.prepared && this.pending > 0) {
          this.chunkStart = this.bufLen - this.pending;
          this.chunkSize = this.pending;
          this.prepared = true;
        }
        writeU64(b, 0, V1_HEADER_SIZE);
        return 8;
      case OFF_DATA_SIZE:
        if (b.length !== 8) fail('EINVAL', 'data_size is 8 bytes');
        if (write) {
          if (this.deviceState !== V1_RESUMING) fail('EINVAL', 'data_size is written only while resuming');
          this.commit(b);
        } else {
          writeU64(b, 0, (this.deviceState & V1_SAVING) !== 0 ? this.chunkSize : this.bufLen);
        }
        return 8;
      default:
        fail('EINVAL', `offset ${offset} is not a field of vfio_device_migration_info`);
    }
  }

  private dataRw(b: Uint8Array, offset: number, write: boolean): number {
    const n = Math.min(b.length, V1_REGION_SIZE - offset);
    const pos = offset - V1_HEADER_SIZE;
    if (write) {
      if (this.deviceState !== V1_RESUMING) fail('EINVAL', 'data is written only while resuming');
      this.buf.set(b.subarray(0, n), pos);
      return n;
    }
    if ((this.deviceState & V1_SAVING) === 0) fail('EINVAL', 'data is read only while saving');
    const src = this.chunkStart + pos;
    b.fill(0, 0, n);
    if (src < this.bufLen) b.set(this.buf.subarray(src, Math.min(this.bufLen, src + n)));
    return n;
  }

  /** data_size written while resuming: the window's first `size` bytes are the stream so far. */
  private commit(b: Uint8Array): void {
    const v = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
    if (v === 0n || v > BigInt(ACC_VF_DATA_SIZE)) fail('EINVAL', `data_size ${v}`);
    const size = Number(v);
    if (size >= QM_MATCH_SIZE && !this.dev.matchDone) this.dev.checkMatch(this.buf.subarray(0, QM_MATCH_SIZE));
    this.bufLen = size;
  }

  private setDeviceState(state: number): void {
    if ((state & ~VFIO_DEVICE_STATE_MASK) !== 0 || !VFIO_DEVICE_STATE_VALID(state)) fail('EINVAL', `device state ${state}`);
    const cur = this.deviceState;
    if (state === cur) return;
    const dev = this.dev;
    dev.exclusive(() => {
      switch (state) {
        case V1_SAVING | V1_RUNNING: {
          if (cur !== V1_RUNNING) fail('EINVAL', 'pre-copy starts from RUNNING');
          const d = dev.buildMatch();
          this.fill(d, QM_MATCH_SIZE);
          this.match = d;
          break;
        }
        case V1_SAVING: {
          if (cur === V1_RESUMING) fail('EINVAL', 'cannot save while resuming');
          const d = this.match ?? dev.buildMatch();
          const bytes = dev.withRegs((regs) => {
            const running = (cur & V1_RUNNING) !== 0;
            if (running) dev.stopOrRestart(regs);
            try {
              return dev.saveInto(regs, d);
            } catch (e) {
              if (running) dev.restart(regs);
              throw e;
            }
          });
          this.fill(d, bytes.length);
          break;
        }
        case V1_STOP:
          if (cur & V1_SAVING) dev.withRegs((regs) => dev.restart(regs));
          else if (cur === V1_RUNNING) dev.withRegs((regs) => dev.stopOrRestart(regs));
          this.clearData();
          break;
        case V1_RUNNING:
          if (cur === V1_RESUMING) {
            const bytes = this.buf.slice(0, this.bufLen);
            dev.withRegs((regs) => {
              dev.loadFrom(regs, bytes);
              dev.start(regs);
            });
          } else {
            dev.withRegs((regs) => dev.start(regs));
          }
          this.clearData();
          break;
        case V1_RESUMING:
          if (cur !== V1_STOP && cur !== V1_RUNNING) fail('EINVAL', 'resuming starts from STOP or RUNNING');
          this.clearData();
          dev.beginResume();
          break;
        default:
          fail('EINVAL', `device state ${state}`);
      }
      this.deviceState = state;
    });
  }

  private fill(d: AccVfData, len: number): void {
    this.buf.fill(0);
    encodeAccVfData(d, len, this.buf);
    this.bufLen = len;
    this.pending = len;
    this.prepared = false;
    this.chunkSize = 0;
    this.chunkStart = 0;
  }
}
