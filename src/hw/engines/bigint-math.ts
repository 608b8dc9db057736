/**
 * Big-number helpers for the HPRE engine: conversion between big-endian byte strings and
 * BigInt, and modular exponentiation.
 */

export function bytesToBigInt(b: Uint8Array): bigint {
  if (b.length === 0) return 0n;
  return BigInt('0x' + Buffer.from(b.buffer, b.byteOffset, b.length).toString('hex'));
}

/** Big-endian, right-aligned into `size` bytes; the caller guarantees x < 256**size. */
export function bigIntToBytes(x: bigint, size: number): Buffer {
  return Buffer.from(x.toString(16).padStart(size * 2, '0'), 'hex');
}

/**
 * base^exp mod m for m >= 1, by left-to-right sliding-window exponentiation: with window w
 * a k-bit exponent costs about k squarings plus k/(w+1) multiplications, against k/2
 * multiplications for plain square-and-multiply, which matters at 4096 bits.
 */
export function modPow(base: bigint, exp: bigint, m: bigint): bigint {
  if (m === 1n) return 0n;
  let b = base % m;
  if (b < 0n) b += m;
  if (exp === 0n) return 1n;
  const bits = exp.toString(2);
  const k = bits.length;
  const w = k > 1536 ? 6 : k > 512 ? 5 : k > 128 ? 4 : k > 24 ? 3 : 1;
  // odd[i] = b^(2i+1)
  const odd: bigint[] = [b];
  if (w > 1) {
    const b2 = (b * b) % m;
    for (let i = 1; i < 1 << (w - 1); i++) odd.push((odd[i - 1] * b2) % m);
  }
  let r = 1n;
  let i = 0;
  while (i < k) {
    if (bits.charCodeAt(i) === 48) {
      r = (r * r) % m;
      i++;
      continue;
    }
    // Longest window starting here that ends in a 1 bit.
    let j = Math.min(i + w, k) - 1;
    while (bits.charCodeAt(j) === 48) j--;
    let v = 0;
    for (let t = i; t <= j; t++) {
      r = (r * r) % m;
      v = (v << 1) | (bits.charCodeAt(t) - 48);
    }
    r = (r * odd[v >> 1]) % m;
    i = j + 1;
  }
  return r;
}
