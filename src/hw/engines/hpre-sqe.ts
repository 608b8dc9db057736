/**
 * `hpre_sqe` layout (64 B; qm-hardware.md 6), shared by the engine model and guest drivers.
 * All big numbers in memory are big-endian and right-aligned to the key size.
 */

export const HPRE_SQE_SIZE = 64;

/** u32 dw0: [4:0] alg, [15:5] etype (error), [31:30] done. */
export const HPRE_DW0 = 0;
export const HPRE_ALG_MASK = 0x1f;
export const HPRE_ETYPE_SHIFT = 5;
export const HPRE_ETYPE_MASK = 0x7ff;
export const HPRE_DONE_SHIFT = 30;
/** The driver submits done = 1; the engine completes with done = 3 (also on error). */
export const HPRE_DONE_SUBMIT = 1;
export const HPRE_DONE_COMPLETE = 3;
/** u8 task_len1 = key_bytes / 8 - 1. */
export const HPRE_TASK_LEN1 = 4;
/** u64 DMA addresses of the key material, the input operand and the output. */
export const HPRE_KEY = 8;
export const HPRE_IN = 16;
export const HPRE_OUT = 24;
/** u16 tag (Linux `__le16 tag`). */
export const HPRE_TAG = 32;

/** dw0 [4:0] algorithms. Only the first four are modelled. */
export const HPRE_ALG_NC_NCRT = 0x0;
export const HPRE_ALG_NC_CRT = 0x1;
export const HPRE_ALG_DH_G2 = 0x4;
export const HPRE_ALG_DH = 0x5;
export const HPRE_ALG_ECC_MUL = 0xd;
export const HPRE_ALG_CURVE25519_MUL = 0x10;

/**
 * Key sizes in bytes the hardware is driven with (Linux sends RSA 1024-4096 bits, using
 * software for 512/1536, and DH groups 768-4096 bits); other sizes report BAD_LENGTH.
 */
export const HPRE_RSA_KEY_BYTES: readonly number[] = [128, 256, 384, 512];
export const HPRE_DH_KEY_BYTES: readonly number[] = [96, 128, 192, 256, 384, 512];

/**
 * etype codes. Only 0 = success is known from Linux; the non-zero values are this model's
 * own. dw0 done is set to 3 for every processed SQE, so drivers test etype.
 *
 * Key layouts (each field key_bytes long unless noted):
 *   NC_NCRT: key = exp | n (private d|n or public e|n), in < n, out = in^exp mod n
 *   NC_CRT:  key = dq | dp | q | p | qinv, each key_bytes/2; in < p*q; out = CRT(in)
 *   DH:      key = xa | p, in < p, out = in^xa mod p
 *   DH_G2:   key = xa | p, input unused, out = 2^xa mod p
 */
export const HpreEtype = {
  OK: 0,
  /** Unknown or unmodelled algorithm (ECC, SM2, X25519...). */
  BAD_ALG: 1,
  /** task_len1 describes a key size the algorithm is not used with. */
  BAD_LENGTH: 2,
  /** Operand not below the modulus. */
  BAD_INPUT: 3,
  /** Modulus (or CRT prime) zero, one or even. */
  BAD_KEY: 4,
  DMA_READ: 5,
  DMA_WRITE: 6,
} as const;
