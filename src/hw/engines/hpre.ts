/**
 * The HPRE engine: RSA (plain and CRT) and finite-field Diffie-Hellman modular
 * exponentiation on big-endian operands right-aligned to the key size, with BigInt
 * arithmetic. Layouts and etype codes are in hpre-sqe.ts.
 *
 * Result write-back: dw0 keeps the alg bits and bits [29:16], etype goes to [15:5] and done
 * to [31:30] = 3. The output (key_bytes) is written only on success, in one DMA write.
 */
import type { Engine, EngineContext } from './engine.js';
import * as Bytes from './bytes.js';
import * as BigMath from './bigint-math.js';
import * as HpreSqe from './hpre-sqe.js';

// Imported values bound to module-local constants: under the tsx/vitest module transforms
// every access to an imported binding is a getter call, too slow for the per-SQE paths.
const { rd16, rd32, rd64, wr32 } = Bytes;
const { bigIntToBytes, bytesToBigInt, modPow } = BigMath;
const {
  HPRE_ALG_DH, HPRE_ALG_DH_G2, HPRE_ALG_MASK, HPRE_ALG_NC_CRT, HPRE_ALG_NC_NCRT, HPRE_DH_KEY_BYTES,
  HPRE_DONE_COMPLETE, HPRE_DONE_SHIFT, HPRE_DW0, HPRE_ETYPE_MASK, HPRE_ETYPE_SHIFT, HPRE_IN, HPRE_KEY,
  HPRE_OUT, HPRE_RSA_KEY_BYTES, HPRE_SQE_SIZE, HPRE_TAG, HPRE_TASK_LEN1, HpreEtype
} = HpreSqe;

export class HpreEngine implements Engine {
  readonly kind = 'hpre' as const;
  readonly sqeSize = HPRE_SQE_SIZE;

  tagOf(sqe: Uint8Array): number {
    return rd16(sqe, HPRE_TAG);
  }

  process(sqe: Uint8Array, ctx: EngineContext): boolean {
    let etype: number;
    try {
      etype = this.run(sqe, ctx);
    } catch {
      // BigInt/Buffer work cannot fail on validated operands; keep the QM safe regardless.
      etype = HpreEtype.BAD_KEY;
    }
    const dw0 = rd32(sqe, HPRE_DW0);
    const kept = dw0 & (HPRE_ALG_MASK | 0x3fff0000);
    wr32(sqe, HPRE_DW0, (kept | ((etype & HPRE_ETYPE_MASK) << HPRE_ETYPE_SHIFT) | (HPRE_DONE_COMPLETE << HPRE_DONE_SHIFT)) >>> 0);
    return etype === HpreEtype.OK;
  }

  private run(sqe: Uint8Array, ctx: EngineContext): number {
    const alg = rd32(sqe, HPRE_DW0) & HPRE_ALG_MASK;
    const size = (sqe[HPRE_TASK_LEN1] + 1) * 8;
    const dma = ctx.dma;
    const keyAddr = rd64(sqe, HPRE_KEY);
    const inAddr = rd64(sqe, HPRE_IN);
    let result: bigint;
    switch (alg) {
      case HPRE_ALG_NC_NCRT:
      case HPRE_ALG_DH:
      case HPRE_ALG_DH_G2: {
        const sizes = alg === HPRE_ALG_NC_NCRT ? HPRE_RSA_KEY_BYTES : HPRE_DH_KEY_BYTES;
        if (!sizes.includes(size)) return HpreEtype.BAD_LENGTH;
        const key = Buffer.allocUnsafe(2 * size);
        if (!dma.read(keyAddr, key)) return HpreEtype.DMA_READ;
        const exp = bytesToBigInt(key.subarray(0, size));
        const mod = bytesToBigInt(key.subarray(size));
        if (!validModulus(mod)) return HpreEtype.BAD_KEY;
        // DH_G2 ignores `in`; an odd modulus above 1 is at least 3, so 2 is a valid base.
        let base = 2n;
        if (alg !== HPRE_ALG_DH_G2) {
          const input = Buffer.allocUnsafe(size);
          if (!dma.read(inAddr, input)) return HpreEtype.DMA_READ;
          base = bytesToBigInt(input);
          if (base >= mod) return HpreEtype.BAD_INPUT;
        }
        result = modPow(base, exp, mod);
        break;
      }
      case HPRE_ALG_NC_CRT: {
        if (!HPRE_RSA_KEY_BYTES.includes(size)) return HpreEtype.BAD_LENGTH;
        const half = size / 2;
        const key = Buffer.allocUnsafe(5 * half);
        if (!dma.read(keyAddr, key)) return HpreEtype.DMA_READ;
        const part = (i: number): bigint => bytesToBigInt(key.subarray(i * half, (i + 1) * half));
        const dq = part(0);
        const dp = part(1);
        const q = part(2);
        const p = part(3);
        const qinv = part(4);
        if (!validModulus(p) || !validModulus(q)) return HpreEtype.BAD_KEY;
        const input = Buffer.allocUnsafe(size);
        if (!dma.read(inAddr, input)) return HpreEtype.DMA_READ;
        const c = bytesToBigInt(input);
        if (c >= p * q) return HpreEtype.BAD_INPUT;
        // Garner: m = m2 + q * (qinv * (m1 - m2) mod p)
        const m1 = modPow(c, dp, p);
        const m2 = modPow(c, dq, q);
        let h = (qinv * (m1 - m2)) % p;
        if (h < 0n) h += p;
        // m2 < q and h < p, so the result stays below p*q < 256**size.
        result = m2 + h * q;
        break;
      }
      default:
        return HpreEtype.BAD_ALG;
    }
    if (!dma.write(rd64(sqe, HPRE_OUT), bigIntToBytes(result, size))) return HpreEtype.DMA_WRITE;
    return HpreEtype.OK;
  }
}

/** Montgomery-style hardware needs an odd modulus above 1. */
function validModulus(m: bigint): boolean {
  return m > 1n && (m & 1n) === 1n;
}
