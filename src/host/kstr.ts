/**
 * The kernel's string parsers that sysfs stores use, reproduced for their accept/reject
 * behaviour (which is what user space observes as EINVAL/ERANGE):
 *
 * - `kstrtoull(s, base)`: optional '+', radix prefix when base is 0 or 16 ("0x" -> 16,
 *   leading "0" -> 8 for base 0), at least one digit, one optional trailing '\n', nothing
 *   else. Overflow of 64 bits -> ERANGE; anything malformed -> EINVAL.
 * - `kstrtou16`: the same plus ERANGE when the value does not fit 16 bits.
 * - `kstrtobool`: y/Y/1/n/N/0 or on/off by their first characters.
 * - `sscanfHex(s, max)`: `sscanf(s, "%x %x ...")` returning the converted fields; a field
 *   wider than 32 bits keeps its low 32 bits as the kernel's cast does.
 * - `sysfsStreq(a, b)`: equality ignoring one trailing newline on either side.
 */
import { Errno } from '../uapi/errno.js';

const U64_MAX = (1n << 64n) - 1n;

function digitValue(c: string): number {
  const code = c.charCodeAt(0);
  if (code >= 0x30 && code <= 0x39) return code - 0x30;
  const lower = code | 0x20;
  if (lower >= 0x61 && lower <= 0x66) return lower - 0x61 + 10;
  return 99;
}

function isXDigit(c: string | undefined): boolean {
  return c !== undefined && c !== '' && digitValue(c) < 16;
}

/** Radix detection of `_parse_integer_fixup_radix`: returns the base and the digits' start. */
function fixupRadix(s: string, base: number, at: number): { base: number; at: number } {
  if (base === 0) {
    if (s[at] === '0') {
      if ((s[at + 1] ?? '').toLowerCase() === 'x' && isXDigit(s[at + 2])) return { base: 16, at: at + 2 };
      return { base: 8, at };
    }
    return { base: 10, at };
  }
  if (base === 16 && s[at] === '0' && (s[at + 1] ?? '').toLowerCase() === 'x' && isXDigit(s[at + 2])) {
    return { base: 16, at: at + 2 };
  }
  return { base, at };
}

/** Digits of `base` from `at`; `count` 0 means no digit was found. */
function parseDigits(s: string, base: number, at: number): { value: bigint; count: number; overflow: boolean } {
  let value = 0n;
  let count = 0;
  let overflow = false;
  const b = BigInt(base);
  for (let i = at; i < s.length; i++) {
    const d = digitValue(s[i]!);
    if (d >= base) break;
    value = value * b + BigInt(d);
    if (value > U64_MAX) {
      overflow = true;
      value &= U64_MAX;
    }
    count++;
  }
  return { value, count, overflow };
}

/** `kstrtoull`: the value, or a negative errno (-EINVAL malformed, -ERANGE overflow). */
export function kstrtoull(s: string, base: number): bigint | number {
  let at = s[0] === '+' ? 1 : 0;
  const r = fixupRadix(s, base, at);
  at = r.at;
  const { value, count, overflow } = parseDigits(s, r.base, at);
  if (overflow) return -Errno.ERANGE;
  if (count === 0) return -Errno.EINVAL;
  at += count;
  if (s[at] === '\n') at++;
  if (at !== s.length) return -Errno.EINVAL;
  return value;
}

/** `kstrtou16`: the value or a negative errno. */
export function kstrtou16(s: string, base: number): number {
  const v = kstrtoull(s, base);
  if (typeof v === 'number') return v;
  if (v > 0xffffn) return -Errno.ERANGE;
  return Number(v);
}

/** `kstrtobool`: true/false or -EINVAL. */
export function kstrtobool(s: string): boolean | number {
  switch (s[0]) {
    case 'y': case 'Y': case '1': return true;
    case 'n': case 'N': case '0': return false;
    case 'o': case 'O':
      switch (s[1]) {
        case 'n': case 'N': return true;
        case 'f': case 'F': return false;
        default: return -Errno.EINVAL;
      }
    default: return -Errno.EINVAL;
  }
}

function isSpace(c: string | undefined): boolean {
  return c === ' ' || c === '\t' || c === '\n' || c === '\r' || c === '\v' || c === '\f';
}

/** `sscanf(s, "%x %x ...")` with up to `max` fields: the u32 values converted, in order. */
export function sscanfHex(s: string, max: number): number[] {
  const out: number[] = [];
  let at = 0;
  while (out.length < max) {
    while (isSpace(s[at])) at++;
    if (!isXDigit(s[at])) break;
    const r = fixupRadix(s, 16, at);
    const { value, count } = parseDigits(s, 16, r.at);
    out.push(Number(value & 0xffffffffn));
    at = r.at + count;
  }
  return out;
}

/** `sysfs_streq`: equal, ignoring one trailing newline on either string. */
export function sysfsStreq(a: string, b: string): boolean {
  const strip = (x: string) => (x.endsWith('\n') ? x.slice(0, -1) : x);
  return strip(a) === strip(b);
}

/** A C string as the kernel sees a sysfs buffer: everything up to the first NUL. */
export function cString(s: string): string {
  const nul = s.indexOf('\0');
  return nul < 0 ? s : s.slice(0, nul);
}
