import type { HwVersion } from '../profile.js';

/** Hardware versions compare by generation: 'v3' and later carry the V3 engine features. */
export function hwAtLeast(v: HwVersion, min: HwVersion): boolean {
  return Number(v.slice(1)) >= Number(min.slice(1));
}
