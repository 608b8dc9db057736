/**
 * The SEC engine: symmetric ciphers and HMAC over one request per BD, type 2 (V2 layout) or
 * type 3 (V3/V4 layout), computed with node:crypto.
 *
 * Data model of one BD (both layouts):
 * - the source is one logical stream at data_src (flat buffer or hardware SGL);
 * - the cipher transforms c_len bytes at cipher_src_offset and writes them to data_dst at
 *   the same offset (data_dst is always used; Linux points it at data_src for in-place
 *   requests, so the `de` bits are not consulted);
 * - the MAC covers a_len bytes at auth_src_offset of the stream as seen at the point the
 *   `seq` bit selects: seq = 0 (cipher then auth, Linux authenc encryption) authenticates
 *   the stream with the cipher region already replaced by the cipher output, i.e.
 *   encrypt-then-MAC over AAD | ciphertext; seq = 1 (auth then cipher, decryption)
 *   authenticates the source as it is;
 * - auth type 1 writes mac_len*4 bytes to `mac`; auth type 2 compares them with the bytes at
 *   `mac` and reports a mismatch in done_flag icv (the deciphered data is still written).
 * Keys and IVs are read from c_key / c_ivin (IV 16 bytes for AES/SM4, 8 for 3DES, none for
 * ECB) and a_key (a_key_len*4 bytes). No padding is applied. Completion: done = 1 always,
 * flag 2 for cipher-only BDs and 3 when the BD authenticates, error_type per SecError.
 */
import { createCipheriv, createDecipheriv, createHmac, getCiphers, timingSafeEqual } from 'node:crypto';
import type { Engine, EngineContext } from './engine.js';
import type { HwVersion } from '../profile.js';
import * as Bytes from './bytes.js';
import * as HwVer from './hw-version.js';
import * as Sgl from './sgl.js';
import * as SecSqe from './sec-sqe.js';

// Imported values bound to module-local constants: under the tsx/vitest module transforms
// every access to an imported binding is a getter call, too slow for the per-SQE paths.
const { rd16, rd32, rd64, wr16 } = Bytes;
const { hwAtLeast } = HwVer;
const { BufferStatus, DataBuffer, Scratch, describeBuffer } = Sgl;
const S = { ...SecSqe };

/** One decoded BD; reused across requests. */
interface SecRequest {
  cipherDir: number;
  authType: number;
  authFirst: boolean;
  srcType: number;
  dstType: number;
  cAlg: number;
  cMode: number;
  cKeyCode: number;
  macWords: number;
  aKeyWords: number;
  aAlg: number;
  aLen: number;
  cLen: number;
  authOff: number;
  cipherOff: number;
  aKeyAddr: number;
  macAddr: number;
  cIvAddr: number;
  cKeyAddr: number;
  srcAddr: number;
  dstAddr: number;
}

interface CipherSpec {
  name: string;
  keyLen: number;
  ivLen: number;
  /** ECB/CBC need whole blocks; 0 = any length >= minLen. */
  block: number;
  minLen: number;
  /** 3DES 2-key: the 16-byte key K1|K2 runs as K1|K2|K1. */
  expand2Key: boolean;
}

interface HashSpec {
  name: string;
  digest: number;
}

const HASHES: Record<number, HashSpec> = {
  [S.SEC_A_HMAC_SHA1]: { name: 'sha1', digest: 20 },
  [S.SEC_A_HMAC_SHA256]: { name: 'sha256', digest: 32 },
  [S.SEC_A_HMAC_SHA512]: { name: 'sha512', digest: 64 },
};

let available: Set<string> | undefined;
function cipherAvailable(name: string): boolean {
  available ??= new Set(getCiphers());
  return available.has(name);
}

/** Maps (c_alg, c_mode, c_key_len) to a node cipher, or a SecError code. */
export function resolveCipher(alg: number, mode: number, keyCode: number, hw: HwVersion): CipherSpec | number {
  if (mode > S.SEC_CMODE_XTS) return S.SecError.BD_FIELD;
  const modeSupported =
    mode === S.SEC_CMODE_ECB || mode === S.SEC_CMODE_CBC || mode === S.SEC_CMODE_CTR || mode === S.SEC_CMODE_XTS;
  let spec: CipherSpec;
  switch (alg) {
    case S.SEC_CALG_AES: {
      if (mode === S.SEC_CMODE_XTS) {
        if (keyCode === S.SEC_CKEY_192) return S.SecError.UNSUPPORTED;
        if (keyCode !== S.SEC_CKEY_128 && keyCode !== S.SEC_CKEY_256) return S.SecError.BD_FIELD;
        const bits = keyCode === S.SEC_CKEY_128 ? 128 : 256;
        spec = { name: `aes-${bits}-xts`, keyLen: bits / 4, ivLen: 16, block: 0, minLen: 16, expand2Key: false };
        break;
      }
      if (keyCode > S.SEC_CKEY_256) return S.SecError.BD_FIELD;
      if (!modeSupported) return S.SecError.UNSUPPORTED;
      const bits = 128 + 64 * keyCode;
      spec = aesLike(`aes-${bits}`, bits / 8, mode);
      break;
    }
    case S.SEC_CALG_SM4: {
      if (keyCode !== S.SEC_CKEY_128) return S.SecError.BD_FIELD;
      if (!modeSupported) return S.SecError.UNSUPPORTED;
      spec =
        mode === S.SEC_CMODE_XTS
          ? { name: 'sm4-xts', keyLen: 32, ivLen: 16, block: 0, minLen: 16, expand2Key: false }
          : aesLike('sm4', 16, mode);
      break;
    }
    case S.SEC_CALG_3DES: {
      if (keyCode !== S.SEC_CKEY_3DES_3KEY && keyCode !== S.SEC_CKEY_3DES_2KEY) return S.SecError.BD_FIELD;
      if (mode !== S.SEC_CMODE_ECB && mode !== S.SEC_CMODE_CBC) return S.SecError.UNSUPPORTED;
      const two = keyCode === S.SEC_CKEY_3DES_2KEY;
      spec = {
        name: mode === S.SEC_CMODE_ECB ? 'des-ede3' : 'des-ede3-cbc',
        keyLen: two ? 16 : 24,
        ivLen: mode === S.SEC_CMODE_ECB ? 0 : 8,
        block: 8,
        minLen: 8,
        expand2Key: two,
      };
      break;
    }
    default:
      return S.SecError.BD_FIELD;
  }
  // CTR arrived with the V3 engine (Linux registers ctr(aes)/ctr(sm4) only for V3+).
  if (mode === S.SEC_CMODE_CTR && !hwAtLeast(hw, 'v3')) return S.SecError.UNSUPPORTED;
  if (!cipherAvailable(spec.name)) return S.SecError.UNSUPPORTED;
  return spec;
}

/**
 * resolveCipher memoised on its inputs: the answer is fixed per (alg, mode, key code, V3+) and
 * building it costs string formatting and a cipher-list lookup that would otherwise run per BD.
 */
const resolved = new Map<number, CipherSpec | number>();
function resolveCipherCached(alg: number, mode: number, keyCode: number, hw: HwVersion): CipherSpec | number {
  // c_alg and c_mode are 4-bit fields and the key code 3 bits; the only hardware dependency
  // is whether the V3 engine's modes exist.
  const key = ((hwAtLeast(hw, 'v3') ? 0x800 : 0) | (keyCode << 8) | (mode << 4) | alg) >>> 0;
  let r = resolved.get(key);
  if (r === undefined) {
    r = resolveCipher(alg, mode, keyCode, hw);
    resolved.set(key, r);
  }
  return r;
}

function aesLike(prefix: string, keyLen: number, mode: number): CipherSpec {
  switch (mode) {
    case S.SEC_CMODE_ECB:
      return { name: `${prefix}-ecb`, keyLen, ivLen: 0, block: 16, minLen: 16, expand2Key: false };
    case S.SEC_CMODE_CBC:
      return { name: `${prefix}-cbc`, keyLen, ivLen: 16, block: 16, minLen: 16, expand2Key: false };
    default:
      return { name: `${prefix}-ctr`, keyLen, ivLen: 16, block: 0, minLen: 1, expand2Key: false };
  }
}

export class SecEngine implements Engine {
  readonly kind = 'sec' as const;
  readonly sqeSize = S.SEC_SQE_SIZE;
  private readonly src = new DataBuffer();
  private readonly dst = new DataBuffer();
  private readonly scratch = new Scratch();
  private readonly cKeyStage = new Staging(64);
  private readonly ivStage = new Staging(16);
  /** a_key_len is 6 bits of words: up to 252 bytes. */
  private readonly aKeyStage = new Staging(63 * 4);
  private readonly macStage = new Staging(64);
  private readonly req: SecRequest = {
    cipherDir: 0, authType: 0, authFirst: false, srcType: 0, dstType: 0, cAlg: 0, cMode: 0,
    cKeyCode: 0, macWords: 0, aKeyWords: 0, aAlg: 0, aLen: 0, cLen: 0, authOff: 0,
    cipherOff: 0, aKeyAddr: 0, macAddr: 0, cIvAddr: 0, cKeyAddr: 0, srcAddr: 0, dstAddr: 0,
  };
  /** icv result of the last execute() (0 or SEC_ICV_ERR). */
  private icv = 0;

  tagOf(sqe: Uint8Array): number {
    return (sqe[0] & S.SEC_BD_TYPE_MASK) === S.SEC_BD_TYPE3 ? rd64(sqe, S.SEC3_TAG) : rd16(sqe, S.SEC2_TAG);
  }

  process(sqe: Uint8Array, ctx: EngineContext): boolean {
    const type = sqe[0] & S.SEC_BD_TYPE_MASK;
    let err: number = S.SecError.NONE;
    let flag = 0;
    this.icv = 0;
    if (type === S.SEC_BD_TYPE2) {
      decodeType2(sqe, this.req);
    } else if (type === S.SEC_BD_TYPE3 && hwAtLeast(ctx.hwVersion, 'v3')) {
      decodeType3(sqe, this.req);
    } else {
      err = S.SecError.BD_TYPE;
    }
    if (err === S.SecError.NONE) {
      flag = this.req.authType !== S.SEC_AUTH_NONE ? S.SEC_FLAG_AEAD : S.SEC_FLAG_CIPHER;
      try {
        err = this.execute(this.req, ctx);
      } catch {
        // node:crypto refusals are mapped inside execute(); this is only a safety net so that
        // nothing escapes into the QM. The one plausible cause left is key material.
        err = S.SecError.KEY;
      }
    }
    const icv = err === S.SecError.NONE ? this.icv : 0;
    wr16(sqe, S.SEC_DONE_FLAG, S.SEC_DONE | (icv << S.SEC_ICV_SHIFT) | (flag << S.SEC_FLAG_SHIFT));
    sqe[S.SEC_ERROR_TYPE] = err;
    return err === S.SecError.NONE && icv === 0;
  }

  private execute(r: SecRequest, ctx: EngineContext): number {
    const E = S.SecError;
    if (r.cipherDir > S.SEC_CIPHER_DEC || r.authType > S.SEC_AUTH_VERIFY) return E.BD_FIELD;
    const ciphering = r.cipherDir !== S.SEC_CIPHER_NONE;
    const authing = r.authType !== S.SEC_AUTH_NONE;
    if (!ciphering && !authing) return E.BD_FIELD;

    let cipher: CipherSpec | undefined;
    if (ciphering) {
      const c = resolveCipherCached(r.cAlg, r.cMode, r.cKeyCode, ctx.hwVersion);
      if (typeof c === 'number') return c;
      cipher = c;
    }
    let hash: HashSpec | undefined;
    let macBytes = 0;
    if (authing) {
      hash = HASHES[r.aAlg];
      if (hash === undefined) return E.UNSUPPORTED;
      macBytes = r.macWords * 4;
      if (macBytes === 0 || macBytes > hash.digest) return E.BD_FIELD;
    }
    const addrErr = checkAddrType(r.srcType) || (ciphering ? checkAddrType(r.dstType) : 0);
    if (addrErr) return addrErr;

    if (cipher) {
      if (r.cLen > S.SEC_MAX_DATA_LEN || r.cLen < cipher.minLen) return E.LENGTH;
      if (cipher.block !== 0 && r.cLen % cipher.block !== 0) return E.LENGTH;
    }
    if (authing && r.aLen > S.SEC_MAX_DATA_LEN) return E.LENGTH;

    // The source region read once: the union of the cipher and auth ranges.
    const cStart = r.cipherOff;
    const cEnd = ciphering ? cStart + r.cLen : cStart;
    const aStart = r.authOff;
    const aEnd = authing ? aStart + r.aLen : aStart;
    const lo = !ciphering ? aStart : !authing ? cStart : Math.min(aStart, cStart);
    const hi = !ciphering ? aEnd : !authing ? cEnd : Math.max(aEnd, cEnd);

    const dma = ctx.dma;
    let st = describeBuffer(this.src, dma, r.srcAddr, r.srcType === S.SEC_ADDR_SGL);
    if (st !== BufferStatus.OK) return st === BufferStatus.DMA_FAULT ? E.DMA_READ : E.SGL;
    if (hi > this.src.capacity) return E.SGL;
    if (ciphering) {
      st = describeBuffer(this.dst, dma, r.dstAddr, r.dstType === S.SEC_ADDR_SGL);
      if (st !== BufferStatus.OK) return st === BufferStatus.DMA_FAULT ? E.DMA_READ : E.SGL;
      if (cEnd > this.dst.capacity) return E.SGL;
    }

    // All reads happen before any write, so a read fault leaves memory untouched. Key material
    // is staged in buffers owned by the engine: node:crypto copies keys and IVs when a cipher
    // or HMAC is created, so nothing keeps a reference past this request.
    let cKey: Buffer | undefined;
    let cIv: Buffer | null = null;
    if (cipher) {
      cKey = this.cKeyStage.take(cipher.keyLen);
      if (!dma.read(r.cKeyAddr, cKey)) return E.DMA_READ;
      if (cipher.expand2Key) {
        // K1|K2 read into the first 16 bytes of the same staging; K1 is repeated as K3.
        cKey = this.cKeyStage.take(24);
        cKey.copyWithin(16, 0, 8);
      }
      if (cipher.ivLen > 0) {
        cIv = this.ivStage.take(cipher.ivLen);
        if (!dma.read(r.cIvAddr, cIv)) return E.DMA_READ;
      }
    }
    let aKey: Buffer | undefined;
    let expected: Buffer | undefined;
    if (authing) {
      aKey = this.aKeyStage.take(r.aKeyWords * 4);
      if (aKey.length > 0 && !dma.read(r.aKeyAddr, aKey)) return E.DMA_READ;
      if (r.authType === S.SEC_AUTH_VERIFY) {
        expected = this.macStage.take(macBytes);
        if (!dma.read(r.macAddr, expected)) return E.DMA_READ;
      }
    }
    // Zero-copy when the port can lend the source: everything below reads `work` before the
    // first write, so an in-place request (dst == src) still sees its original input.
    let work: Uint8Array | null = this.src.view(dma, lo, hi - lo);
    if (work === null) {
      work = this.scratch.take(hi - lo);
      if (!this.src.read(dma, lo, work)) return E.DMA_READ;
    }

    let cOut: Buffer | undefined;
    if (cipher && cKey) {
      const input = span(work, cStart - lo, cEnd - lo);
      try {
        const c =
          r.cipherDir === S.SEC_CIPHER_ENC
            ? createCipheriv(cipher.name, cKey, cIv)
            : createDecipheriv(cipher.name, cKey, cIv);
        c.setAutoPadding(false);
        const head = c.update(input);
        const tail = c.final();
        cOut = tail.length === 0 ? head : Buffer.concat([head, tail]);
      } catch {
        // Lengths were validated above, so a refusal here is about the key material
        // (OpenSSL rejects XTS keys whose halves are equal).
        return E.KEY;
      }
    }

    let mac: Buffer | undefined;
    if (hash && aKey) {
      const h = createHmac(hash.name, aKey);
      if (cOut && !r.authFirst) {
        // Authenticate the stream as it leaves the engine: cipher output spliced in.
        if (aStart < cStart) h.update(work.subarray(aStart - lo, Math.min(aEnd, cStart) - lo));
        const oStart = Math.max(aStart, cStart);
        const oEnd = Math.min(aEnd, cEnd);
        if (oStart < oEnd) h.update(cOut.subarray(oStart - cStart, oEnd - cStart));
        if (aEnd > cEnd) h.update(work.subarray(Math.max(aStart, cEnd) - lo, aEnd - lo));
      } else {
        h.update(span(work, aStart - lo, aEnd - lo));
      }
      const full = h.digest();
      // Buffer.subarray costs a view object per job; the usual BD asks for the whole digest.
      mac = macBytes === full.length ? full : full.subarray(0, macBytes);
      if (expected && !timingSafeEqual(mac, expected)) this.icv = S.SEC_ICV_ERR;
    }

    if (cOut && !this.dst.write(dma, cStart, cOut)) return E.DMA_WRITE;
    if (mac && r.authType === S.SEC_AUTH_GEN && !dma.write(r.macAddr, mac)) return E.DMA_WRITE;
    return E.NONE;
  }
}

/** Bytes [from, to) of `b`; `b` itself when that is all of it (the usual single-range BD). */
function span(b: Uint8Array, from: number, to: number): Uint8Array {
  return from === 0 && to === b.length ? b : b.subarray(from, to);
}

/** Views of every length up to a fixed size over one buffer, each made once. */
class Staging {
  private readonly buf: Buffer;
  private readonly views: Buffer[] = [];
  constructor(size: number) {
    this.buf = Buffer.alloc(size);
  }
  take(len: number): Buffer {
    return (this.views[len] ??= this.buf.subarray(0, len));
  }
}

function checkAddrType(t: number): number {
  if (t === S.SEC_ADDR_PBUF || t === S.SEC_ADDR_SGL) return 0;
  return t === S.SEC_ADDR_PRP ? S.SecError.UNSUPPORTED : S.SecError.BD_FIELD;
}

function decodeType2(b: Uint8Array, r: SecRequest): void {
  const b0 = b[S.SEC2_TYPE_CIPHER_AUTH];
  const b1 = b[S.SEC2_SDS_SA_TYPE];
  const b2 = b[S.SEC2_SDM_ADDR_TYPE];
  r.cipherDir = (b0 >>> S.SEC2_CIPHER_SHIFT) & 3;
  r.authType = (b0 >>> S.SEC2_AUTH_SHIFT) & 3;
  r.authFirst = (b1 & S.SEC2_SEQ_BIT) !== 0;
  r.srcType = (b1 >>> S.SEC2_SRC_ADDR_TYPE_SHIFT) | ((b2 & 3) << 1);
  r.dstType = (b2 >>> S.SEC2_DST_ADDR_TYPE_SHIFT) & 7;
  const mka = rd32(b, S.SEC2_MAC_KEY_ALG);
  r.macWords = mka & 0x1f;
  r.aKeyWords = (mka >>> S.SEC2_AKEY_LEN_SHIFT) & 0x3f;
  r.aAlg = (mka >>> S.SEC2_AALG_SHIFT) & 0x3f;
  const km = rd16(b, S.SEC2_ICVW_KMODE);
  r.cKeyCode = (km >>> S.SEC2_CKEY_LEN_SHIFT) & 7;
  r.cMode = (km >>> S.SEC2_CMODE_SHIFT) & 0xf;
  r.cAlg = b[S.SEC2_C_ALG] & 0xf;
  r.aLen = rd32(b, S.SEC2_A_LEN);
  r.cLen = rd32(b, S.SEC2_C_LEN);
  r.authOff = rd16(b, S.SEC2_AUTH_SRC_OFFSET);
  r.cipherOff = rd16(b, S.SEC2_CIPHER_SRC_OFFSET);
  r.aKeyAddr = rd64(b, S.SEC2_A_KEY);
  r.macAddr = rd64(b, S.SEC2_MAC);
  r.cIvAddr = rd64(b, S.SEC2_C_IVIN);
  r.cKeyAddr = rd64(b, S.SEC2_C_KEY);
  r.srcAddr = rd64(b, S.SEC2_DATA_SRC);
  r.dstAddr = rd64(b, S.SEC2_DATA_DST);
}

function decodeType3(b: Uint8Array, r: SecRequest): void {
  const param = rd32(b, S.SEC3_BD_PARAM);
  const cik = rd16(b, S.SEC3_C_ICV_KEY);
  const modeAlg = b[S.SEC3_C_MODE_ALG];
  const amk = rd32(b, S.SEC3_AUTH_MAC_KEY);
  r.cipherDir = cik & 3;
  r.authType = amk & 3;
  r.authFirst = (b[S.SEC3_HUK_IV_SEQ] & S.SEC3_SEQ_BIT) !== 0;
  r.srcType = (param >>> S.SEC3_SRC_ADDR_TYPE_SHIFT) & 7;
  r.dstType = (param >>> S.SEC3_DST_ADDR_TYPE_SHIFT) & 7;
  r.macWords = (amk >>> S.SEC3_MAC_LEN_SHIFT) & 0x1f;
  r.aKeyWords = (amk >>> S.SEC3_AKEY_LEN_SHIFT) & 0x3f;
  r.aAlg = (amk >>> S.SEC3_AALG_SHIFT) & 0x3f;
  r.cKeyCode = (cik >>> S.SEC3_CKEY_LEN_SHIFT) & 7;
  r.cMode = modeAlg & 0xf;
  r.cAlg = modeAlg >>> S.SEC3_CALG_SHIFT;
  r.aLen = rd32(b, S.SEC3_A_LEN);
  r.cLen = rd32(b, S.SEC3_C_LEN);
  r.authOff = rd16(b, S.SEC3_AUTH_SRC_OFFSET);
  r.cipherOff = rd16(b, S.SEC3_CIPHER_SRC_OFFSET);
  r.aKeyAddr = rd64(b, S.SEC3_A_KEY);
  r.macAddr = rd64(b, S.SEC3_MAC);
  r.cIvAddr = rd64(b, S.SEC3_C_IVIN);
  r.cKeyAddr = rd64(b, S.SEC3_C_KEY);
  r.srcAddr = rd64(b, S.SEC3_DATA_SRC);
  r.dstAddr = rd64(b, S.SEC3_DATA_DST);
}
