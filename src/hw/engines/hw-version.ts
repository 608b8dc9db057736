import type { HwVersion } from '../profile.js';

/** Generation number of a version name; engines ask per request, so known names skip the parse. */
function generation(v: string): number {
  switch (v) {
    case 'v2': return 2;
    case 'v3': return 3;
    case 'v4': return 4;
    default: return Number(v.slice(1));
  }
}

/** Hardware versions compare by generation: 'v3' and later carry the V3 engine features. */
export function hwAtLeast(v: HwVersion, min: HwVersion): boolean {
  return generation(v) >= generation(min);
}
