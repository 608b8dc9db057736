/**
 * A device profile: everything that distinguishes one ACC engine and hardware version from
 * another. The model is built from a profile; a new variant is a new JSON file under
 * `firmware/`. `src/hw/firmware.ts` loads and validates these files.
 */
export type EngineKind = 'zip' | 'sec' | 'hpre';
export type HwVersion = 'v2' | 'v3' | 'v4';

export interface DeviceProfile {
  /** File stem, e.g. "zip-v3". */
  name: string;
  engine: EngineKind;
  hwVersion: HwVersion;
  pci: {
    vendorId: number;          // 0x19e5
    pfDeviceId: number;        // ZIP 0xa250, SEC 0xa255, HPRE 0xa258
    vfDeviceId: number;        // ZIP 0xa251, SEC 0xa256, HPRE 0xa259
    revision: number;          // QM version: V2 0x21, V3 0x30, V4 0x50
    subVersionId: number;      // QM_SUB_VERSION_ID (0x210); 0 = none
    classCode: number;         // 24-bit class code
    subsystemVendorId: number;
    subsystemId: number;
  };
  bars: {
    /** PF BAR sizes in bytes by BAR index (only the ones present); BAR2 holds the QM. */
    pf: Record<string, number>;
    /** VF BAR sizes as advertised in the PF's SR-IOV capability; BAR2 is 64 KiB. */
    vf: Record<string, number>;
  };
  sriov: {
    totalVfs: number;          // 63
    vfOffset: number;          // routing-id offset of VF1 from the PF
    vfStride: number;
  };
  qm: {
    totalQps: number;          // 1024 on V2/V3
    pfQNum: number;            // queues kept by the PF (ZIP/HPRE 64, SEC 256)
    maxQpsPerFunction: number; // QM_TOTAL_QP [21:11]
    sqeSize: number;           // ZIP 128, SEC 128, HPRE 64
    sqDepth: number;
    cqDepth: number;
    eqDepth: number;
    aeqDepth: number;
  };
  /** Capability register values (function-relative offsets in BAR2, see qm-hardware.md 1). */
  caps: {
    funcCaps: number;          // 0x3100
    xeqDepthCap: number;       // 0x3104
    qpDepthCap: number;        // 0x3108
    eqIrqType: number;         // 0x310C
    aeqIrqType: number;        // 0x3110
    abnIrqType: number;        // 0x3114
    pf2vfIrqType: number;      // 0x3118
    irqNumCap: number;         // 0x311C
    extBarIndex: number;       // 0x3120
    /** Engine capability registers 0x3124-0x317C: offset (hex string) -> value. */
    engine: Record<string, number>;
  };
  msi: {
    pfVectors: number;         // V2/V3: 4
    vfVectors: number;         // V2: 2, V3: 3
  };
  /** Reset values of VF BAR2 registers: offset (hex string) -> value. */
  resetValues: Record<string, number>;
}
