/**
 * SEC BD layouts (128 B; qm-hardware.md 6): type 2 (V2 driver) and type 3 (V3/V4 driver),
 * shared by the engine model and guest drivers. Byte offsets; all fields little-endian.
 * Bit positions inside packed bytes follow the Linux `sec_sqe` / `sec_sqe3` definitions.
 */

export const SEC_SQE_SIZE = 128;

/** BD type, low nibble of byte 0 in both layouts. */
export const SEC_BD_TYPE_MASK = 0x0f;
export const SEC_BD_TYPE2 = 2;
export const SEC_BD_TYPE3 = 3;

// ---- type 2 -------------------------------------------------------------------------------
/** byte 0: [3:0] type, [5:4] cipher dir, [7:6] auth type. */
export const SEC2_TYPE_CIPHER_AUTH = 0;
export const SEC2_CIPHER_SHIFT = 4;
export const SEC2_AUTH_SHIFT = 6;
/** byte 1: [0] seq (1 = auth before cipher), [2:1] de, [6:3] scene, [7] src_addr_type bit 0. */
export const SEC2_SDS_SA_TYPE = 1;
export const SEC2_SEQ_BIT = 0x01;
export const SEC2_DE_SHIFT = 1;
export const SEC2_SRC_ADDR_TYPE_SHIFT = 7;
/** byte 2: [1:0] src_addr_type bits 2:1, [4:2] dst_addr_type, [7:5] mac_addr_type. */
export const SEC2_SDM_ADDR_TYPE = 2;
export const SEC2_DST_ADDR_TYPE_SHIFT = 2;
/** u32: [4:0] mac_len (words), [10:5] a_key_len (words), [16:11] a_alg. */
export const SEC2_MAC_KEY_ALG = 8;
export const SEC2_AKEY_LEN_SHIFT = 5;
export const SEC2_AALG_SHIFT = 11;
/** u16: [5:0] c_icv_len, [8:6] c_width, [11:9] c_key_len, [15:12] c_mode. */
export const SEC2_ICVW_KMODE = 12;
export const SEC2_CKEY_LEN_SHIFT = 9;
export const SEC2_CMODE_SHIFT = 12;
/** u8: [3:0] c_alg. */
export const SEC2_C_ALG = 14;
/** u32 a_len (bytes authenticated) and u32 c_len (bytes ciphered); see SEC_MAX_DATA_LEN. */
export const SEC2_A_LEN = 16;
export const SEC2_C_LEN = 20;
export const SEC2_AUTH_SRC_OFFSET = 24;
export const SEC2_CIPHER_SRC_OFFSET = 26;
export const SEC2_TAG = 40;
export const SEC2_A_IVIN = 56;
export const SEC2_A_KEY = 64;
export const SEC2_MAC = 72;
export const SEC2_C_IVIN = 80;
export const SEC2_C_KEY = 88;
export const SEC2_DATA_SRC = 96;
export const SEC2_DATA_DST = 104;

// ---- type 3 -------------------------------------------------------------------------------
/** u32: [3:0] type, [8:5] scene, [10:9] de, [13:11] src_addr_type, [16:14] dst_addr_type. */
export const SEC3_BD_PARAM = 0;
export const SEC3_DE_SHIFT = 9;
export const SEC3_SRC_ADDR_TYPE_SHIFT = 11;
export const SEC3_DST_ADDR_TYPE_SHIFT = 14;
/** u16: [1:0] cipher dir, [9:4] c_icv_len, [12:10] c_width, [15:13] c_key_len. */
export const SEC3_C_ICV_KEY = 4;
export const SEC3_CKEY_LEN_SHIFT = 13;
/** u8: [3:0] c_mode, [7:4] c_alg. */
export const SEC3_C_MODE_ALG = 6;
export const SEC3_CALG_SHIFT = 4;
/** u8: [6] seq (1 = auth before cipher). */
export const SEC3_HUK_IV_SEQ = 7;
export const SEC3_SEQ_BIT = 0x40;
export const SEC3_TAG = 8;
export const SEC3_DATA_SRC = 16;
export const SEC3_A_KEY = 24;
export const SEC3_A_IVIN = 32;
export const SEC3_C_KEY = 48;
/**
 * u32: [1:0] auth type, [8:4] mac_len (words), [14:9] a_key_len (words), [20:15] a_alg,
 * [26:25] ctr counter mode (Linux sets 2 = 128-bit rollover, the only mode modelled).
 */
export const SEC3_AUTH_MAC_KEY = 56;
export const SEC3_MAC_LEN_SHIFT = 4;
export const SEC3_AKEY_LEN_SHIFT = 9;
export const SEC3_AALG_SHIFT = 15;
export const SEC3_CTR_CNT_SHIFT = 25;
export const SEC3_AUTH_SRC_OFFSET = 64;
export const SEC3_CIPHER_SRC_OFFSET = 66;
export const SEC3_A_LEN = 68;
export const SEC3_C_LEN = 72;
export const SEC3_DATA_DST = 76;
export const SEC3_MAC = 84;
export const SEC3_C_IVIN = 92;

// ---- completion (same place in both layouts) -----------------------------------------------
/** u16: [0] done, [3:1] icv, [6:4] csc, [10:7] flag. */
export const SEC_DONE_FLAG = 112;
export const SEC_DONE = 0x1;
export const SEC_ICV_SHIFT = 1;
export const SEC_FLAG_SHIFT = 7;
/** u8 error_type. */
export const SEC_ERROR_TYPE = 114;

/** done_flag [10:7]: 2 for a cipher-only BD, 3 whenever the BD authenticates (AEAD/HMAC). */
export const SEC_FLAG_CIPHER = 2;
export const SEC_FLAG_AEAD = 3;
/** done_flag [3:1] after an auth type 2 (verify) BD whose MAC did not match. */
export const SEC_ICV_ERR = 2;

/** Cipher direction (type 2 byte 0 [5:4], type 3 c_icv_key [1:0]). */
export const SEC_CIPHER_NONE = 0;
export const SEC_CIPHER_ENC = 1;
export const SEC_CIPHER_DEC = 2;

/**
 * Auth type. 1: compute the MAC and write mac_len*4 bytes to `mac`. 2: compute the MAC and
 * compare it with the mac_len*4 bytes already at `mac` (Linux copies the received ICV there
 * for AEAD decryption); mismatch sets done_flag icv = SEC_ICV_ERR with error_type 0.
 */
export const SEC_AUTH_NONE = 0;
export const SEC_AUTH_GEN = 1;
export const SEC_AUTH_VERIFY = 2;

/** Data address types (src/dst_addr_type). PRP is not modelled. */
export const SEC_ADDR_PBUF = 0;
export const SEC_ADDR_SGL = 1;
export const SEC_ADDR_PRP = 2;

/** c_alg. */
export const SEC_CALG_3DES = 1;
export const SEC_CALG_AES = 2;
export const SEC_CALG_SM4 = 3;

/** c_mode. CFB/OFB/CCM/GCM are valid encodings this model reports as unsupported. */
export const SEC_CMODE_ECB = 0;
export const SEC_CMODE_CBC = 1;
export const SEC_CMODE_CFB = 2;
export const SEC_CMODE_OFB = 3;
export const SEC_CMODE_CTR = 4;
export const SEC_CMODE_CCM = 5;
export const SEC_CMODE_GCM = 6;
export const SEC_CMODE_XTS = 7;

/**
 * c_key_len (Linux sec_ckey_type). AES: 128/192/256-bit keys. XTS carries two keys and the
 * code names the size of ONE half (128 -> 32-byte key, 256 -> 64-byte key; XTS-192 has no
 * hardware support, Linux falls back to software). SM4: 128 only. 3DES: 3KEY = 24-byte key
 * K1|K2|K3, 2KEY = 16-byte key K1|K2 used as K1|K2|K1.
 */
export const SEC_CKEY_128 = 0;
export const SEC_CKEY_192 = 1;
export const SEC_CKEY_256 = 2;
export const SEC_CKEY_3DES_3KEY = 1;
export const SEC_CKEY_3DES_2KEY = 3;

/** a_alg. */
export const SEC_A_HMAC_SHA1 = 0x10;
export const SEC_A_HMAC_SHA256 = 0x11;
export const SEC_A_HMAC_SHA512 = 0x15;

/** a_len and c_len are 24-bit quantities in the hardware (upper bits hold IV offsets). */
export const SEC_MAX_DATA_LEN = 0xff_ffff;

/**
 * error_type codes. The hardware's numbering is undocumented; these are this model's own.
 * done is set to 1 for every processed BD, success or not.
 */
export const SecError = {
  NONE: 0x00,
  /** BD type not 2/3, or type 3 on V2 hardware. */
  BD_TYPE: 0x01,
  /** Invalid encoding: cipher dir 3, auth type 3, unknown c_alg/c_mode/key-length code,
   *  mac_len 0 or longer than the digest, address type > 2, nothing to do. */
  BD_FIELD: 0x02,
  /** Valid encoding not available: CFB/OFB/CCM/GCM, XTS-192, CTR before V3, PRP buffers,
   *  other auth algorithms, or a cipher missing from node:crypto (e.g. SM4-XTS). */
  UNSUPPORTED: 0x03,
  /** c_len 0 with a cipher, not a block multiple (ECB/CBC), XTS below 16 bytes, or a/c_len
   *  above SEC_MAX_DATA_LEN. */
  LENGTH: 0x04,
  DMA_READ: 0x05,
  /** Output before the fault may have landed; the MAC is not written. */
  DMA_WRITE: 0x06,
  /** Malformed SGL, or an offset/length beyond the SGL's total length. */
  SGL: 0x07,
  /** The cipher rejected the key (e.g. XTS with identical halves). */
  KEY: 0x08,
} as const;
