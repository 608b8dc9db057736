import { KernelError } from '../../uapi/errno.js';

/** A PCI function address: segment (domain) plus the 16-bit routing id bus<<8 | dev<<3 | fn. */
export interface PciAddress {
  domain: number;
  routingId: number;
}

const BDF_RE = /^([0-9a-fA-F]{4}):([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/;

/** Parses "dddd:bb:dd.f" (the sysfs spelling); EINVAL on anything else. */
export function parseBdf(bdf: string): PciAddress {
  const m = BDF_RE.exec(bdf);
  if (!m) throw new KernelError('EINVAL', `bad PCI address "${bdf}"`);
  const dev = parseInt(m[3]!, 16);
  if (dev > 0x1f) throw new KernelError('EINVAL', `bad PCI device number in "${bdf}"`);
  return {
    domain: parseInt(m[1]!, 16),
    routingId: (parseInt(m[2]!, 16) << 8) | (dev << 3) | parseInt(m[4]!, 10),
  };
}

/** Formats a routing id as "dddd:bb:dd.f" with lowercase hex, as Linux prints it. */
export function formatBdf(domain: number, routingId: number): string {
  const bus = (routingId >> 8) & 0xff;
  const dev = (routingId >> 3) & 0x1f;
  const fn = routingId & 7;
  return `${hex(domain, 4)}:${hex(bus, 2)}:${hex(dev, 2)}.${fn}`;
}

function hex(v: number, width: number): string {
  return v.toString(16).padStart(width, '0');
}
