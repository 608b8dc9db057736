/**
 * The device fd VFIO_GROUP_GET_DEVICE_FD hands out. Every operation goes to the core device
 * (and through it to the variant driver); the fd itself only adds mmap and the syscall
 * convention (0 / count / -errno).
 */
import { KernelError, Errno } from '../../uapi/errno.js';
import { VfioFile } from '../fd.js';
import type { VfioPciCoreDevice } from './core-device.js';
import type { VfioMapping } from './ops.js';

export class VfioDeviceFile extends VfioFile {
  constructor(readonly core: VfioPciCoreDevice) {
    super();
  }

  /**
   * mmap(2) of `length` bytes at device fd offset `offset` (VFIO_PCI_INDEX_TO_OFFSET(index) +
   * offset in the region; page aligned). Returns the mapping or -errno.
   */
  mmap(offset: number, length: number): VfioMapping | number {
    if (this.closed) return -Errno.EBADF;
    try {
      return this.core.mmap(offset, length);
    } catch (e) {
      if (e instanceof KernelError) return -e.errno;
      throw e;
    }
  }

  protected override doIoctl(request: number, arg?: Uint8Array | number): number | void {
    return this.core.ioctl(request, arg);
  }

  protected override doRead(buf: Uint8Array, pos: number): number {
    return this.core.read(buf, pos);
  }

  protected override doWrite(buf: Uint8Array, pos: number): number {
    return this.core.write(buf, pos);
  }

  protected override release(): void {
    this.core.releaseFile(this);
  }
}
