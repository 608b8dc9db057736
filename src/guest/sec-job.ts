/**
 * SEC requests (qm-hardware.md 6): skcipher and HMAC BDs, type 2 on V2 hardware and type 3
 * on V3/V4, flat buffers, output to a separate buffer (`de` = 1).
 *
 * Checks done here before anything reaches the device, as the Linux driver does them:
 * algorithm names, key and IV sizes, block-multiple lengths (ECB/CBC), XTS minimum length,
 * CTR only from V3 on. An empty cipher request completes at once with empty output (XTS:
 * EINVAL). HMAC keys longer than the hash block are hashed first (RFC 2104); the device takes
 * the key in whole words, and zero-padding a key up to the block size leaves HMAC unchanged.
 */
import { createHash } from 'node:crypto';
import { KernelError, fail } from '../uapi/errno.js';
import type { HwVersion } from '../hw/profile.js';
import * as S from '../hw/engines/sec-sqe.js';
import type { GuestRam } from './io.js';
import * as J from './jobs.js';
import type { BufferSet as Buffers, PreparedJob, PreparedJobState } from './jobs.js';

const {
  SEC_A_HMAC_SHA1, SEC_A_HMAC_SHA256, SEC_A_HMAC_SHA512, SEC_AUTH_GEN, SEC_BD_TYPE2, SEC_BD_TYPE3,
  SEC_CALG_3DES, SEC_CALG_AES, SEC_CALG_SM4, SEC_CIPHER_DEC, SEC_CIPHER_ENC, SEC_CKEY_128, SEC_CKEY_256,
  SEC_CKEY_3DES_3KEY, SEC_CMODE_CBC, SEC_CMODE_CTR, SEC_CMODE_ECB, SEC_CMODE_XTS, SEC_DONE, SEC_DONE_FLAG,
  SEC_ERROR_TYPE, SEC_FLAG_AEAD, SEC_FLAG_CIPHER, SEC_FLAG_SHIFT, SEC_ICV_SHIFT, SEC_MAX_DATA_LEN,
  SEC2_AALG_SHIFT, SEC2_A_KEY, SEC2_A_LEN, SEC2_AKEY_LEN_SHIFT, SEC2_AUTH_SHIFT, SEC2_C_ALG, SEC2_C_IVIN,
  SEC2_C_KEY, SEC2_C_LEN, SEC2_CIPHER_SHIFT, SEC2_CKEY_LEN_SHIFT, SEC2_CMODE_SHIFT, SEC2_DATA_DST,
  SEC2_DATA_SRC, SEC2_DE_SHIFT, SEC2_ICVW_KMODE, SEC2_MAC, SEC2_MAC_KEY_ALG, SEC2_SDS_SA_TYPE,
  SEC2_TYPE_CIPHER_AUTH, SEC3_AALG_SHIFT, SEC3_A_KEY, SEC3_A_LEN, SEC3_AKEY_LEN_SHIFT, SEC3_AUTH_MAC_KEY,
  SEC3_BD_PARAM, SEC3_C_ICV_KEY, SEC3_C_IVIN, SEC3_C_KEY, SEC3_C_LEN, SEC3_C_MODE_ALG, SEC3_CALG_SHIFT,
  SEC3_CKEY_LEN_SHIFT, SEC3_CTR_CNT_SHIFT, SEC3_DATA_DST, SEC3_DATA_SRC, SEC3_DE_SHIFT, SEC3_MAC,
  SEC3_MAC_LEN_SHIFT,
} = S;
const { BufferSet, RESIDENT_DONE, put16, put32, put64 } = J;

export interface CipherAlg {
  name: string;
  calg: number;
  cmode: number;
  keyCode: number;
  keyLen: number;
  ivLen: number;
  /** Lengths must be a multiple of this (0 = any). */
  block: number;
  minLen: number;
}

export interface HmacAlg {
  name: string;
  aalg: number;
  hash: 'sha1' | 'sha256' | 'sha512';
  digest: number;
  blockSize: number;
}

const MODES: Record<string, number> = { ecb: SEC_CMODE_ECB, cbc: SEC_CMODE_CBC, ctr: SEC_CMODE_CTR, xts: SEC_CMODE_XTS };

function parseCipherName(alg: string): CipherAlg | undefined {
  let m = /^aes-(128|192|256)-(ecb|cbc|ctr|xts)$/.exec(alg);
  if (m) {
    const bits = Number(m[1]);
    const mode = m[2]!;
    if (mode === 'xts') {
      if (bits === 192) fail('ENOENT', 'aes-192-xts is not offered by the hardware');
      return { name: alg, calg: SEC_CALG_AES, cmode: SEC_CMODE_XTS, keyCode: bits === 128 ? SEC_CKEY_128 : SEC_CKEY_256, keyLen: bits / 4, ivLen: 16, block: 0, minLen: 16 };
    }
    return {
      name: alg, calg: SEC_CALG_AES, cmode: MODES[mode]!, keyCode: (bits - 128) / 64, keyLen: bits / 8,
      ivLen: mode === 'ecb' ? 0 : 16, block: mode === 'ctr' ? 0 : 16, minLen: mode === 'ctr' ? 1 : 16,
    };
  }
  if ((m = /^sm4-(ecb|cbc|ctr)$/.exec(alg))) {
    const mode = m[1]!;
    return {
      name: alg, calg: SEC_CALG_SM4, cmode: MODES[mode]!, keyCode: SEC_CKEY_128, keyLen: 16,
      ivLen: mode === 'ecb' ? 0 : 16, block: mode === 'ctr' ? 0 : 16, minLen: mode === 'ctr' ? 1 : 16,
    };
  }
  if ((m = /^des-ede3-(ecb|cbc)$/.exec(alg))) {
    const mode = m[1]!;
    return {
      name: alg, calg: SEC_CALG_3DES, cmode: MODES[mode]!, keyCode: SEC_CKEY_3DES_3KEY, keyLen: 24,
      ivLen: mode === 'ecb' ? 0 : 8, block: 8, minLen: 8,
    };
  }
  return undefined;
}

const cipherCache = new Map<string, CipherAlg>();

/** Cipher names: aes-{128,192,256}-{ecb,cbc,ctr}, aes-{128,256}-xts, des-ede3-{ecb,cbc}, sm4-{ecb,cbc,ctr}. ENOENT otherwise. */
export function parseCipher(alg: string, hw: HwVersion): CipherAlg {
  let c = cipherCache.get(alg);
  if (c === undefined) {
    c = parseCipherName(alg) ?? fail('ENOENT', `unknown cipher '${alg}'`);
    cipherCache.set(alg, c);
  }
  if (c.cmode === SEC_CMODE_CTR && hw === 'v2') fail('EOPNOTSUPP', `${alg} needs QM V3 or later`);
  return c;
}

const HMACS: Record<string, HmacAlg> = {
  'hmac-sha1': { name: 'hmac-sha1', aalg: SEC_A_HMAC_SHA1, hash: 'sha1', digest: 20, blockSize: 64 },
  'hmac-sha256': { name: 'hmac-sha256', aalg: SEC_A_HMAC_SHA256, hash: 'sha256', digest: 32, blockSize: 64 },
  'hmac-sha512': { name: 'hmac-sha512', aalg: SEC_A_HMAC_SHA512, hash: 'sha512', digest: 64, blockSize: 128 },
};

export function parseHmac(alg: string): HmacAlg {
  return (Object.hasOwn(HMACS, alg) ? HMACS[alg] : undefined) ?? fail('ENOENT', `unknown HMAC '${alg}'`);
}

function checkDone(sqe: Uint8Array, wantFlag: number): void {
  const done = sqe[SEC_DONE_FLAG]! | (sqe[SEC_DONE_FLAG + 1]! << 8);
  const err = sqe[SEC_ERROR_TYPE]!;
  const flag = (done >>> SEC_FLAG_SHIFT) & 0xf;
  const icv = (done >>> SEC_ICV_SHIFT) & 0x7;
  if ((done & SEC_DONE) === 0 || err !== 0 || flag !== wantFlag) {
    throw new KernelError('EIO', `SEC request failed (done 0x${done.toString(16)}, error_type 0x${err.toString(16)})`);
  }
  if (icv !== 0) throw new KernelError('EBADMSG', 'SEC MAC verification failed');
}

/** A SEC cipher request as plain data (PreparedJob.save). */
export interface CipherJobState extends PreparedJobState {
  kind: 'sec-cipher';
  hw: HwVersion;
  alg: string;
  dir: number;
  len: number;
  keyAddr: number;
  ivAddr: number;
  src: number;
  dst: number;
}

class CipherJob implements PreparedJob {
  private readonly bufs: Buffers;
  private readonly keyAddr: number;
  private readonly ivAddr: number;
  private readonly src: number;
  private readonly dst: number;
  private readonly len: number;
  private readonly resident: boolean;
  produced = 0;

  constructor(ram: GuestRam, private readonly hw: HwVersion, private readonly c: CipherAlg, key: Uint8Array,
    iv: Uint8Array, data: Uint8Array | null, private readonly dir: number, saved?: CipherJobState) {
    this.bufs = new BufferSet(ram, saved?.bufs);
    this.resident = saved?.resident === true;
    if (saved) {
      ({ keyAddr: this.keyAddr, ivAddr: this.ivAddr, src: this.src, dst: this.dst, len: this.len } = saved);
      return;
    }
    this.len = data!.length;
    try {
      this.keyAddr = this.bufs.put(key, 16);
      this.ivAddr = c.ivLen > 0 ? this.bufs.put(iv, 16) : 0;
      this.src = this.bufs.put(data!);
      this.dst = this.bufs.alloc(data!.length);
    } catch (e) {
      this.bufs.releaseAll();
      throw e;
    }
  }

  save(): CipherJobState {
    const st: CipherJobState = {
      kind: 'sec-cipher', bufs: this.bufs.addresses(), hw: this.hw, alg: this.c.name, dir: this.dir, len: this.len,
      keyAddr: this.keyAddr, ivAddr: this.ivAddr, src: this.src, dst: this.dst,
    };
    if (this.resident) st.resident = true;
    return st;
  }

  fill(sqe: Uint8Array): void {
    const c = this.c;
    const len = this.len;
    if (this.hw === 'v2') {
      sqe[SEC2_TYPE_CIPHER_AUTH] = SEC_BD_TYPE2 | (this.dir << SEC2_CIPHER_SHIFT);
      sqe[SEC2_SDS_SA_TYPE] = 1 << SEC2_DE_SHIFT;
      put16(sqe, SEC2_ICVW_KMODE, (c.keyCode << SEC2_CKEY_LEN_SHIFT) | (c.cmode << SEC2_CMODE_SHIFT));
      sqe[SEC2_C_ALG] = c.calg;
      put32(sqe, SEC2_C_LEN, len);
      put64(sqe, SEC2_C_IVIN, this.ivAddr);
      put64(sqe, SEC2_C_KEY, this.keyAddr);
      put64(sqe, SEC2_DATA_SRC, this.src);
      put64(sqe, SEC2_DATA_DST, this.dst);
      return;
    }
    put32(sqe, SEC3_BD_PARAM, SEC_BD_TYPE3 | (1 << SEC3_DE_SHIFT));
    put16(sqe, SEC3_C_ICV_KEY, this.dir | (c.keyCode << SEC3_CKEY_LEN_SHIFT));
    sqe[SEC3_C_MODE_ALG] = c.cmode | (c.calg << SEC3_CALG_SHIFT);
    // CTR: 128-bit counter rollover, as Linux programs it.
    if (c.cmode === SEC_CMODE_CTR) put32(sqe, SEC3_AUTH_MAC_KEY, (2 << SEC3_CTR_CNT_SHIFT) >>> 0);
    put32(sqe, SEC3_C_LEN, len);
    put64(sqe, SEC3_C_IVIN, this.ivAddr);
    put64(sqe, SEC3_C_KEY, this.keyAddr);
    put64(sqe, SEC3_DATA_SRC, this.src);
    put64(sqe, SEC3_DATA_DST, this.dst);
  }

  finish(sqe: Uint8Array): Uint8Array {
    checkDone(sqe, SEC_FLAG_CIPHER);
    if (this.resident) {
      this.produced = this.len;
      return RESIDENT_DONE;
    }
    return this.bufs.get(this.dst, this.len);
  }

  release(): void {
    this.bufs.releaseAll();
  }
}

/** A prepared job, or the output itself when there is nothing for the device to do. */
export function prepareCipher(ram: GuestRam, hw: HwVersion, alg: string, key: Uint8Array, iv: Uint8Array,
  data: Uint8Array, decrypt: boolean): PreparedJob | Uint8Array {
  const c = parseCipher(alg, hw);
  if (key.length !== c.keyLen) fail('EINVAL', `${alg} takes a ${c.keyLen}-byte key (got ${key.length})`);
  if (c.ivLen > 0 && iv.length !== c.ivLen) fail('EINVAL', `${alg} takes a ${c.ivLen}-byte IV (got ${iv.length})`);
  if (data.length === 0) {
    if (c.cmode === SEC_CMODE_XTS) fail('EINVAL', 'XTS needs at least 16 bytes');
    return new Uint8Array(0);
  }
  checkCipherLength(c, data.length);
  return new CipherJob(ram, hw, c, key, iv, data, decrypt ? SEC_CIPHER_DEC : SEC_CIPHER_ENC);
}

function checkCipherLength(c: CipherAlg, len: number): void {
  if (len > SEC_MAX_DATA_LEN) fail('EINVAL', `request of ${len} bytes exceeds ${SEC_MAX_DATA_LEN}`);
  if (len < c.minLen || (c.block !== 0 && len % c.block !== 0)) {
    fail('EINVAL', `${c.name}: length ${len} is not a valid request size`);
  }
}

function checkAddr(a: number, what: string): void {
  if (!Number.isSafeInteger(a) || a <= 0) fail('EINVAL', `${what} must be a guest address (got ${String(a)})`);
}

/** A cipher request over buffers the caller keeps in guest RAM (see Accel.runAt). */
export interface CipherAt {
  alg: string;
  /** Guest addresses of the key (the algorithm's key length) and IV (none for ECB: 0). */
  key: number;
  iv: number;
  src: number;
  dst: number;
  len: number;
  decrypt?: boolean;
}

/**
 * The same checks as prepareCipher, over guest addresses; nothing is copied or allocated in RAM.
 * `decrypt` overrides r.decrypt, so a caller holding a request of another shape (Accel.runAt's
 * `op`) passes it as is: copying it into a CipherAt with object spread costs microseconds.
 */
export function prepareCipherAt(ram: GuestRam, hw: HwVersion, r: CipherAt, decrypt = r.decrypt === true): PreparedJob {
  const c = parseCipher(r.alg, hw);
  if (!Number.isSafeInteger(r.len) || r.len <= 0) fail('EINVAL', `${r.alg}: length ${String(r.len)} is not a valid request size`);
  checkCipherLength(c, r.len);
  checkAddr(r.key, 'key');
  if (c.ivLen > 0) checkAddr(r.iv, 'iv');
  checkAddr(r.src, 'src');
  checkAddr(r.dst, 'dst');
  const dir = decrypt ? SEC_CIPHER_DEC : SEC_CIPHER_ENC;
  return new CipherJob(ram, hw, c, NO_BYTES, NO_BYTES, null, dir, {
    kind: 'sec-cipher', bufs: [], resident: true, hw, alg: c.name, dir,
    len: r.len, keyAddr: r.key, ivAddr: c.ivLen > 0 ? r.iv : 0, src: r.src, dst: r.dst,
  });
}

/**
 * An HMAC request over buffers the caller keeps in guest RAM. The device takes the key in
 * whole words, so `keyLen` must be a multiple of 4 and at most the hash block size (hash a
 * longer key first, RFC 2104; pad a shorter one with zeros, which leaves HMAC unchanged).
 */
export interface HmacAt {
  alg: string;
  key: number;
  keyLen: number;
  src: number;
  len: number;
  /** Where the device writes the digest (the algorithm's digest length). */
  mac: number;
}

export function prepareHmacAt(ram: GuestRam, hw: HwVersion, r: HmacAt): PreparedJob {
  const h = parseHmac(r.alg);
  if (!Number.isSafeInteger(r.len) || r.len < 0 || r.len > SEC_MAX_DATA_LEN) {
    fail('EINVAL', `request of ${String(r.len)} bytes is outside 0..${SEC_MAX_DATA_LEN}`);
  }
  if (!Number.isSafeInteger(r.keyLen) || r.keyLen < 0 || r.keyLen % 4 !== 0 || r.keyLen > h.blockSize) {
    fail('EINVAL', `${r.alg}: a resident key is whole words of at most ${h.blockSize} bytes (got ${String(r.keyLen)})`);
  }
  if (r.keyLen > 0) checkAddr(r.key, 'key');
  checkAddr(r.src, 'src');
  checkAddr(r.mac, 'mac');
  return new HmacJob(ram, hw, h, r.keyLen / 4, NO_BYTES, null, {
    kind: 'sec-hmac', bufs: [], resident: true, hw, alg: h.name, keyWords: r.keyLen / 4, len: r.len,
    keyAddr: r.keyLen > 0 ? r.key : 0, src: r.src, mac: r.mac,
  });
}

/** A SEC HMAC request as plain data (PreparedJob.save). */
export interface HmacJobState extends PreparedJobState {
  kind: 'sec-hmac';
  hw: HwVersion;
  alg: string;
  keyWords: number;
  len: number;
  keyAddr: number;
  src: number;
  mac: number;
}

class HmacJob implements PreparedJob {
  private readonly bufs: Buffers;
  private readonly keyAddr: number;
  private readonly src: number;
  private readonly mac: number;
  private readonly len: number;
  private readonly resident: boolean;
  produced = 0;

  constructor(ram: GuestRam, private readonly hw: HwVersion, private readonly h: HmacAlg,
    private readonly keyWords: number, key: Uint8Array, data: Uint8Array | null, saved?: HmacJobState) {
    this.bufs = new BufferSet(ram, saved?.bufs);
    this.resident = saved?.resident === true;
    if (saved) {
      ({ keyAddr: this.keyAddr, src: this.src, mac: this.mac, len: this.len } = saved);
      return;
    }
    this.len = data!.length;
    try {
      this.keyAddr = this.bufs.put(key, 16);
      this.src = this.bufs.put(data!);
      this.mac = this.bufs.alloc(h.digest, 16);
    } catch (e) {
      this.bufs.releaseAll();
      throw e;
    }
  }

  save(): HmacJobState {
    const st: HmacJobState = {
      kind: 'sec-hmac', bufs: this.bufs.addresses(), hw: this.hw, alg: this.h.name, keyWords: this.keyWords,
      len: this.len, keyAddr: this.keyAddr, src: this.src, mac: this.mac,
    };
    if (this.resident) st.resident = true;
    return st;
  }

  fill(sqe: Uint8Array): void {
    const h = this.h;
    const macWords = h.digest / 4;
    if (this.hw === 'v2') {
      sqe[SEC2_TYPE_CIPHER_AUTH] = SEC_BD_TYPE2 | (SEC_AUTH_GEN << SEC2_AUTH_SHIFT);
      put32(sqe, SEC2_MAC_KEY_ALG, (macWords | (this.keyWords << SEC2_AKEY_LEN_SHIFT) | (h.aalg << SEC2_AALG_SHIFT)) >>> 0);
      put32(sqe, SEC2_A_LEN, this.len);
      put64(sqe, SEC2_A_KEY, this.keyAddr);
      put64(sqe, SEC2_MAC, this.mac);
      put64(sqe, SEC2_DATA_SRC, this.src);
      return;
    }
    put32(sqe, SEC3_BD_PARAM, SEC_BD_TYPE3);
    put32(sqe, SEC3_AUTH_MAC_KEY, (SEC_AUTH_GEN | (macWords << SEC3_MAC_LEN_SHIFT)
      | (this.keyWords << SEC3_AKEY_LEN_SHIFT) | (h.aalg << SEC3_AALG_SHIFT)) >>> 0);
    put32(sqe, SEC3_A_LEN, this.len);
    put64(sqe, SEC3_A_KEY, this.keyAddr);
    put64(sqe, SEC3_MAC, this.mac);
    put64(sqe, SEC3_DATA_SRC, this.src);
  }

  finish(sqe: Uint8Array): Uint8Array {
    checkDone(sqe, SEC_FLAG_AEAD);
    if (this.resident) {
      this.produced = this.h.digest;
      return RESIDENT_DONE;
    }
    return this.bufs.get(this.mac, this.h.digest);
  }

  release(): void {
    this.bufs.releaseAll();
  }
}

export function prepareHmac(ram: GuestRam, hw: HwVersion, alg: string, key: Uint8Array, data: Uint8Array): PreparedJob {
  const h = parseHmac(alg);
  if (data.length > SEC_MAX_DATA_LEN) fail('EINVAL', `request of ${data.length} bytes exceeds ${SEC_MAX_DATA_LEN}`);
  const k = key.length > h.blockSize ? new Uint8Array(createHash(h.hash).update(key).digest()) : key;
  const keyWords = Math.ceil(k.length / 4);
  let padded = k;
  if (k.length !== keyWords * 4) {
    padded = new Uint8Array(keyWords * 4);
    padded.set(k);
  }
  return new HmacJob(ram, hw, h, keyWords, padded, data);
}

const NO_BYTES = new Uint8Array(0);

/** Rebuilds a saved SEC request over the same guest RAM (its buffers are still allocated). */
export function reviveSecJob(ram: GuestRam, st: CipherJobState | HmacJobState): PreparedJob {
  if (st.kind === 'sec-cipher') {
    return new CipherJob(ram, st.hw, parseCipher(st.alg, st.hw), NO_BYTES, NO_BYTES, null, st.dir, st);
  }
  return new HmacJob(ram, st.hw, parseHmac(st.alg), st.keyWords, NO_BYTES, null, st);
}
