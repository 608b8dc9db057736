/**
 * The BAR2 audit log (qm-function: "who touched a function's BAR2") keeps every detail of a
 * non-guest access in its packed ring: origin, BAR, offset, size, direction and both value
 * halves come back exactly as logged, oldest first, the ring keeping the most recent ones.
 */
import { describe, expect, it } from 'vitest';
import { AuditLog, type AuditEntry } from '../src/hw/qm/audit.js';

type Access = Omit<AuditEntry, never> & { high: boolean };

function log(a: AuditLog, e: Access): void {
  a.access(e.time, e.origin, e.bar, e.off, e.size, e.write, e.value, e.valueHi, e.high);
}

const strip = ({ high: _h, ...e }: Access): AuditEntry => e;

describe('AuditLog', () => {
  it('returns each detailed entry field for field; guest accesses to the low half are only counted', () => {
    const a = new AuditLog(16);
    const seen: Access[] = [
      { time: 5, origin: 'driver', bar: 2, off: 0x300, size: 8, write: true, value: 0xffffffff, valueHi: 0x80000001, high: false },
      { time: 6, origin: 'guest', bar: 2, off: 0x8004, size: 4, write: false, value: 7, valueHi: 0, high: true },
      { time: 7, origin: 'vmm', bar: 4, off: 0x1_1000, size: 1, write: false, value: 0xab, valueHi: 0, high: false },
      { time: 2 ** 40 + 3, origin: 'test', bar: 2, off: 0xfffe, size: 2, write: true, value: 0xbeef, valueHi: 0, high: true },
      { time: 9, origin: 'pf', bar: 2, off: 0x60, size: 4, write: false, value: 0, valueHi: 0, high: false },
    ];
    const guestLow: Access = { time: 8, origin: 'guest', bar: 2, off: 0x1000, size: 8, write: true, value: 1, valueHi: 2, high: false };
    log(a, seen[0]!);
    log(a, seen[1]!);
    log(a, guestLow);
    log(a, seen[2]!);
    log(a, seen[3]!);
    log(a, seen[4]!);
    expect(a.entries()).toEqual(seen.map(strip));
    expect(a.recorded).toBe(5);
    expect(a.count('guest', 'low')).toBe(1);
    expect(a.count('guest', 'high')).toBe(1);
    expect(a.count('driver', 'low')).toBe(1);
    expect(a.count('test', 'high')).toBe(1);
  });

  it('keeps the most recent entries in order once the ring wraps; clear empties it', () => {
    const a = new AuditLog(3);
    for (let i = 0; i < 7; i++) {
      log(a, { time: i, origin: 'driver', bar: 2, off: 4 * i, size: 4, write: i % 2 === 0, value: i * 3, valueHi: 0, high: false });
    }
    expect(a.entries().map((e) => [e.time, e.off, e.write, e.value])).toEqual([[4, 16, true, 12], [5, 20, false, 15], [6, 24, true, 18]]);
    expect(a.recorded).toBe(7);
    a.clear();
    expect(a.entries()).toEqual([]);
    expect(a.count('driver', 'low')).toBe(0);
  });
});
