/**
 * Test helper: a small reader for C uAPI headers. It extracts object-like and function-like
 * #defines, enum members and struct member lists, and evaluates constant expressions the
 * way the C preprocessor + compiler would for the subset vfio.h uses. It is deliberately
 * independent of src/uapi so the constants there can be checked against the real header.
 */

export interface HeaderMacro {
  name: string;
  params: string[] | null;
  body: string;
}

export interface ParsedHeader {
  /** Object-like defines and enum members, in header order. */
  names: string[];
  defines: Map<string, HeaderMacro>;
  /** Enum members with their (already resolved) expression text. */
  enumExprs: Map<string, string>;
  structs: Map<string, string[]>;
}

export function stripComments(src: string): string {
  return src
    .replace(/\\\r?\n/g, ' ')
    .replace(/\/\*[\s\S]*?\*\//g, ' ')
    .replace(/\/\/[^\n]*/g, '');
}

export function parseHeader(src: string): ParsedHeader {
  const text = stripComments(src);
  const names: string[] = [];
  const defines = new Map<string, HeaderMacro>();
  const enumExprs = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^\s*#\s*define\s+(\w+)(\(([^)]*)\))?\s*(.*?)\s*$/.exec(line);
    if (!m) continue;
    const params = m[2] ? m[3]!.split(',').map((p) => p.trim()).filter(Boolean) : null;
    defines.set(m[1]!, { name: m[1]!, params, body: m[4]! });
    names.push(m[1]!);
  }
  const noDirectives = text
    .split('\n')
    .filter((l) => !/^\s*#/.test(l))
    .join('\n');
  for (const em of noDirectives.matchAll(/\benum\s*\w*\s*\{([^}]*)\}/g)) {
    let prevName: string | null = null;
    for (const raw of em[1]!.split(',')) {
      const item = raw.trim();
      if (!item) continue;
      const mm = /^(\w+)\s*(?:=\s*([\s\S]+))?$/.exec(item);
      if (!mm) throw new Error(`cannot parse enum member "${item}"`);
      const expr = mm[2] !== undefined ? mm[2].trim() : prevName === null ? '0' : `(${prevName}) + 1`;
      enumExprs.set(mm[1]!, expr);
      names.push(mm[1]!);
      prevName = mm[1]!;
    }
  }
  const structs = new Map<string, string[]>();
  for (const sm of noDirectives.matchAll(/\bstruct\s+(\w+)\s*\{([\s\S]*?)\n\};/g)) {
    const members: string[] = [];
    for (const stmt of sm[2]!.split(';')) {
      const s = stmt.replace(/\s+/g, ' ').trim();
      if (!s) continue;
      if (/\bunion\b|\{|\}/.test(s)) {
        members.push('<union>');
        continue;
      }
      const fm = /(\w+)\s*(\[\w*\])?$/.exec(s);
      if (!fm) throw new Error(`cannot parse member "${s}" of ${sm[1]}`);
      members.push(fm[1]!);
    }
    structs.set(sm[1]!, members);
  }
  return { names, defines, enumExprs, structs };
}

type Val = bigint | string;

const TYPE_MASKS: Record<string, number | null> = {
  __u8: 8,
  __u16: 16,
  __u32: 32,
  __u64: 64,
  __s32: -32,
  __s64: -64,
  int: -32,
  unsigned: 32,
  long: -64,
};

/** asm-generic/ioctl.h: _IOC(dir, type, nr, size) = dir<<30 | size<<16 | type<<8 | nr, _IO dir 0 size 0. */
function ioc(dir: bigint, type: bigint, nr: bigint, size: bigint): bigint {
  return (dir << 30n) | (size << 16n) | (type << 8n) | nr;
}

export class HeaderEvaluator {
  private cache = new Map<string, Val>();
  private active = new Set<string>();
  constructor(private readonly h: ParsedHeader) {}

  value(name: string): Val {
    const hit = this.cache.get(name);
    if (hit !== undefined) return hit;
    if (this.active.has(name)) throw new Error(`recursive definition of ${name}`);
    this.active.add(name);
    try {
      const d = this.h.defines.get(name);
      let v: Val;
      if (d && d.params === null) v = this.evalExpr(d.body);
      else if (this.h.enumExprs.has(name)) v = this.evalExpr(this.h.enumExprs.get(name)!);
      else throw new Error(`unknown name ${name}`);
      this.cache.set(name, v);
      return v;
    } finally {
      this.active.delete(name);
    }
  }

  /** Expands a function-like macro with the given argument values and evaluates it. */
  call(name: string, args: bigint[]): bigint {
    const d = this.h.defines.get(name);
    if (!d || d.params === null) throw new Error(`${name} is not a function-like macro`);
    let body = d.body;
    d.params.forEach((p, i) => {
      body = body.replace(new RegExp(`\\b${p}\\b`, 'g'), `(${args[i]!.toString()})`);
    });
    const v = this.evalExpr(body);
    if (typeof v !== 'bigint') throw new Error(`${name} is not numeric`);
    return v;
  }

  evalExpr(src: string): Val {
    const toks = tokenize(src);
    if (toks.length === 0) throw new Error('empty expression');
    let i = 0;
    const peek = () => toks[i];
    const next = () => toks[i++]!;
    const expect = (t: string) => {
      if (toks[i] !== t) throw new Error(`expected ${t} in "${src}" at ${toks[i]}`);
      i++;
    };
    const num = (v: Val): bigint => {
      if (typeof v !== 'bigint') throw new Error(`string in arithmetic: "${src}"`);
      return v;
    };
    const b = (c: boolean) => (c ? 1n : 0n);

    const primary = (): Val => {
      const t = next();
      if (t === '(') {
        const tt = peek();
        if (tt !== undefined && tt in TYPE_MASKS && toks[i + 1] === ')') {
          i += 2;
          const bits = TYPE_MASKS[tt]!;
          const v = num(unary());
          return bits > 0 ? BigInt.asUintN(bits, v) : BigInt.asIntN(-bits, v);
        }
        const v = ternary();
        expect(')');
        return v;
      }
      if (/^0x[0-9a-f]+[ul]*$/i.test(t)) return BigInt(t.replace(/[ul]+$/i, ''));
      if (/^[0-9]+[ul]*$/i.test(t)) return BigInt(t.replace(/[ul]+$/i, ''));
      if (/^'.'$/.test(t)) return BigInt(t.charCodeAt(1));
      if (t.startsWith('"')) return t.slice(1, -1);
      if (/^\w+$/.test(t)) {
        if (peek() === '(') {
          next();
          const args: bigint[] = [];
          if (peek() !== ')') {
            for (;;) {
              args.push(num(ternary()));
              if (peek() === ',') next();
              else break;
            }
          }
          expect(')');
          if (t === '_IO') return ioc(0n, args[0]!, args[1]!, 0n);
          return this.call(t, args);
        }
        return this.value(t);
      }
      throw new Error(`unexpected token ${t} in "${src}"`);
    };
    const unary = (): Val => {
      const t = peek();
      if (t === '~') return next(), ~num(unary());
      if (t === '-') return next(), -num(unary());
      if (t === '+') return next(), num(unary());
      if (t === '!') return next(), b(num(unary()) === 0n);
      return primary();
    };
    const binary = (ops: string[][], level: number): Val => {
      if (level === ops.length) return unary();
      let l = binary(ops, level + 1);
      while (peek() !== undefined && ops[level]!.includes(peek()!)) {
        const op = next();
        const r = num(binary(ops, level + 1));
        const x = num(l);
        switch (op) {
          case '||': l = b(x !== 0n || r !== 0n); break;
          case '&&': l = b(x !== 0n && r !== 0n); break;
          case '|': l = x | r; break;
          case '^': l = x ^ r; break;
          case '&': l = x & r; break;
          case '==': l = b(x === r); break;
          case '!=': l = b(x !== r); break;
          case '<': l = b(x < r); break;
          case '>': l = b(x > r); break;
          case '<=': l = b(x <= r); break;
          case '>=': l = b(x >= r); break;
          case '<<': l = x << r; break;
          case '>>': l = x >> r; break;
          case '+': l = x + r; break;
          case '-': l = x - r; break;
          case '*': l = x * r; break;
          case '/': l = x / r; break;
          case '%': l = x % r; break;
          default: throw new Error(`operator ${op}`);
        }
      }
      return l;
    };
    const LEVELS = [['||'], ['&&'], ['|'], ['^'], ['&'], ['==', '!='], ['<', '>', '<=', '>='], ['<<', '>>'], ['+', '-'], ['*', '/', '%']];
    const ternary = (): Val => {
      const c = binary(LEVELS, 0);
      if (peek() !== '?') return c;
      next();
      const a = ternary();
      expect(':');
      const d = ternary();
      return num(c) !== 0n ? a : d;
    };
    const v = ternary();
    if (i !== toks.length) throw new Error(`trailing tokens in "${src}"`);
    return v;
  }
}

function tokenize(src: string): string[] {
  const re = /\s*(0x[0-9a-fA-F]+[uUlL]*|[0-9]+[uUlL]*|'[^']'|"[^"]*"|\w+|<<|>>|==|!=|<=|>=|&&|\|\||[()|&^~+\-*/%?:<>!,])/gy;
  const out: string[] = [];
  let m: RegExpExecArray | null;
  let last = 0;
  while ((m = re.exec(src)) !== null) {
    out.push(m[1]!);
    last = re.lastIndex;
  }
  if (src.slice(last).trim() !== '') throw new Error(`cannot tokenize "${src.slice(last)}"`);
  return out;
}
