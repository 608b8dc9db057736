/**
 * Small zeroed byte buffers carved from shared slabs, for the buffers every migration arc
 * makes (a device state of a few hundred bytes, a data fd's store).
 *
 * Why: V8 gives a typed array above 64 bytes its own off-heap backing store, and making one
 * costs more than a whole migration arc's register work; a view on an existing ArrayBuffer
 * costs about as much as a subarray. A slab is never handed out twice, so every buffer is
 * zeroed and independent; a slab is freed once no buffer carved from it is alive. Callers
 * that look at `.buffer` must honour `byteOffset`, as for any view.
 */

const SLAB_BYTES = 16 * 1024;
/** Larger requests get a buffer of their own (they are rare and would waste slab space). */
const MAX_CARVED = 1024;

let slab = new ArrayBuffer(SLAB_BYTES);
let used = 0;

/** A zeroed `n`-byte buffer. */
export function allocBytes(n: number): Uint8Array {
  if (n > MAX_CARVED) return new Uint8Array(n);
  // 8-byte granules keep every carved buffer aligned for u64 views.
  const take = (n + 7) & ~7;
  if (used + take > SLAB_BYTES) {
    slab = new ArrayBuffer(SLAB_BYTES);
    used = 0;
  }
  const b = new Uint8Array(slab, used, n);
  used += take;
  return b;
}
