/**
 * How a device model reaches memory. A device never sees guest RAM directly: every access
 * goes through the DmaPort its PCI function was given, which on the host is the IOMMU
 * domain of the function's group. A failed translation returns false (the IOMMU records the
 * fault); the device then reports an error in its own status fields, never throws.
 *
 * Addresses are bus addresses (IOVAs) as plain numbers; callers build them from two u32
 * register halves as `hi * 2**32 + lo`. Values at or above 2**53 lose precision, but they
 * lie far outside any IOMMU aperture and fault anyway.
 */
export interface DmaPort {
  /** Copies `dst.length` bytes from `iova` into `dst`. */
  read(iova: number, dst: Uint8Array): boolean;
  /** Copies `src` to `iova`. Writes mark the touched pages dirty in any active tracker. */
  write(iova: number, src: Uint8Array): boolean;
  /**
   * Optional zero-copy read: a live view of `len` bytes at `iova` when the whole range is
   * readable and backed by one piece of memory, else null (then use `read`, which also
   * records any fault). The view is valid only until the device's current request ends and
   * is never written through (writes go through `write`, which dirty tracking sees).
   */
  readView?(iova: number, len: number): Uint8Array | null;
}

/** Who issued an MMIO or config access; recorded in the device's audit log. */
export type AccessOrigin = 'guest' | 'driver' | 'pf' | 'vmm' | 'test';

/** Message-signalled interrupt output of a function: called with the vector number. */
export type MsiSink = (vector: number) => void;
