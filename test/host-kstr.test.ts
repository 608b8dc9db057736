/**
 * The kernel string parsers behind sysfs stores (lib/kstrtox.c, lib/vsprintf.c vsscanf,
 * lib/string.c sysfs_streq), checked on hand-picked inputs with the kernel's results.
 */
import { describe, expect, it } from 'vitest';
import { cString, kstrtobool, kstrtou16, kstrtoull, sscanfHex, sysfsStreq } from '../src/host/kstr.js';
import { Errno } from '../src/uapi/errno.js';

describe('kstrtoull / kstrtou16', () => {
  it('base 0 radix detection, optional "+", one trailing newline', () => {
    expect(kstrtou16('4', 0)).toBe(4);
    expect(kstrtou16('4\n', 0)).toBe(4);
    expect(kstrtou16('+7', 0)).toBe(7);
    expect(kstrtou16('0x1f', 0)).toBe(31);
    expect(kstrtou16('0X1F', 0)).toBe(31);
    expect(kstrtou16('010', 0)).toBe(8);
    expect(kstrtou16('0', 0)).toBe(0);
    expect(kstrtou16('65535', 0)).toBe(65535);
    expect(kstrtoull('18446744073709551615', 10)).toBe(18446744073709551615n);
    expect(kstrtoull('ff', 16)).toBe(255n);
    expect(kstrtoull('0xff', 16)).toBe(255n);
  });

  it('rejections: EINVAL for malformed text, ERANGE for overflow', () => {
    for (const s of ['', '\n', 'x', '-1', ' 1', '1 ', '1\n\n', '08', '0x', '4a', '++1']) {
      expect(kstrtou16(s, 0), JSON.stringify(s)).toBe(-Errno.EINVAL);
    }
    expect(kstrtou16('65536', 0)).toBe(-Errno.ERANGE);
    expect(kstrtoull('18446744073709551616', 10)).toBe(-Errno.ERANGE);
    // Overflow is reported before trailing garbage, as _kstrtoull checks it first.
    expect(kstrtoull('99999999999999999999999x', 10)).toBe(-Errno.ERANGE);
  });
});

describe('kstrtobool', () => {
  it('first-character rules and on/off', () => {
    for (const s of ['y', 'Y', '1', 'yes', 'on', 'ON', '1\n']) expect(kstrtobool(s), s).toBe(true);
    for (const s of ['n', 'N', '0', 'no', 'off', 'OFF', '0x']) expect(kstrtobool(s), s).toBe(false);
    for (const s of ['', 'o', 'ox', 'true', '2', ' 1']) expect(kstrtobool(s), s).toBe(-Errno.EINVAL);
  });
});

describe('sscanf("%x %x ...")', () => {
  it('counts converted fields, skips whitespace, accepts 0x, keeps the low 32 bits', () => {
    expect(sscanfHex('19e5 a251', 7)).toEqual([0x19e5, 0xa251]);
    expect(sscanfHex('  0x19e5\t0XA251 ffffffff\n', 7)).toEqual([0x19e5, 0xa251, 0xffffffff]);
    expect(sscanfHex('19e5', 7)).toEqual([0x19e5]);
    expect(sscanfHex('19e5 zz', 7)).toEqual([0x19e5]);
    expect(sscanfHex('zz', 7)).toEqual([]);
    expect(sscanfHex('123456789a 1', 7)).toEqual([0x3456789a, 1]);
    expect(sscanfHex('1 2 3 4 5 6 7 8', 7)).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect(sscanfHex('19e5a251', 7)).toEqual([0x19e5a251]);
  });
});

describe('sysfs_streq and C strings', () => {
  it('ignores one trailing newline on either side only', () => {
    expect(sysfsStreq('0000:75:00.1', '0000:75:00.1\n')).toBe(true);
    expect(sysfsStreq('a\n', 'a')).toBe(true);
    expect(sysfsStreq('a', 'a ')).toBe(false);
    expect(sysfsStreq('a', 'a\n\n')).toBe(false);
    expect(cString('abc\0def')).toBe('abc');
    expect(cString('abc')).toBe('abc');
  });
});
