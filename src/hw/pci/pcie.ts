import type { ConfigSpace, PreservedField } from './config-space.js';
import {
  PCI_CAP_ID_EXP,
  PCI_EXP_DEVCAP,
  PCI_EXP_DEVCAP_EXT_TAG,
  PCI_EXP_DEVCAP_FLR,
  PCI_EXP_DEVCAP_RBER,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL_BCR_FLR,
  PCI_EXP_DEVCTL_CERE,
  PCI_EXP_DEVCTL_EXT_TAG,
  PCI_EXP_DEVCTL_FERE,
  PCI_EXP_DEVCTL_NFERE,
  PCI_EXP_DEVCTL_NOSNOOP_EN,
  PCI_EXP_DEVCTL_PAYLOAD,
  PCI_EXP_DEVCTL_READRQ,
  PCI_EXP_DEVCTL_READRQ_512B,
  PCI_EXP_DEVCTL_RELAX_EN,
  PCI_EXP_DEVCTL_URRE,
  PCI_EXP_DEVSTA,
  PCI_EXP_DEVSTA_CED,
  PCI_EXP_DEVSTA_FED,
  PCI_EXP_DEVSTA_NFED,
  PCI_EXP_DEVSTA_URD,
  PCI_EXP_FLAGS,
  PCI_EXP_TYPE_RC_END,
  PCI_EXP_V2_SIZEOF,
} from './regs.js';

/** Max_Payload_Size Supported: 256 bytes (encoding 1). */
export const ACC_DEVCAP_MPS = 1;

const PF_DEVCTL_RW =
  PCI_EXP_DEVCTL_CERE |
  PCI_EXP_DEVCTL_NFERE |
  PCI_EXP_DEVCTL_FERE |
  PCI_EXP_DEVCTL_URRE |
  PCI_EXP_DEVCTL_RELAX_EN |
  PCI_EXP_DEVCTL_PAYLOAD |
  PCI_EXP_DEVCTL_EXT_TAG |
  PCI_EXP_DEVCTL_NOSNOOP_EN |
  PCI_EXP_DEVCTL_READRQ |
  PCI_EXP_DEVCTL_BCR_FLR;

/**
 * PCI Express capability, version 2, device/port type Root Complex Integrated Endpoint:
 * the ACC engines are on-die functions of the Kunpeng SoC (they enumerate on the root bus,
 * e.g. 75:00.0). An RCiEP has no link, so Link Capabilities/Control/Status (and their "2"
 * versions) are hardwired to zero, as the PCIe spec requires for functions without a link.
 *
 * Device Capabilities advertise Function Level Reset. Writing 1 to Device Control bit 15
 * (Initiate FLR) calls `onFlr` after the write completes; the bit always reads 0.
 *
 * For a VF (SR-IOV 3.5.6) the Device Control fields other than Initiate FLR are RsvdP
 * (the PF's settings govern), so only bit 15 is writable.
 */
export class PcieCapability {
  readonly offset: number;

  constructor(cfg: ConfigSpace, isVf: boolean, requestFlr: () => void) {
    const off = cfg.addCapability(PCI_CAP_ID_EXP, PCI_EXP_V2_SIZEOF);
    this.offset = off;
    cfg.define(off + PCI_EXP_FLAGS, 2, 2 | (PCI_EXP_TYPE_RC_END << 4));
    cfg.define(
      off + PCI_EXP_DEVCAP,
      4,
      (ACC_DEVCAP_MPS | PCI_EXP_DEVCAP_EXT_TAG | PCI_EXP_DEVCAP_RBER | PCI_EXP_DEVCAP_FLR) >>> 0,
    );
    cfg.define(
      off + PCI_EXP_DEVCTL,
      2,
      isVf ? 0 : PCI_EXP_DEVCTL_RELAX_EN | PCI_EXP_DEVCTL_NOSNOOP_EN | PCI_EXP_DEVCTL_READRQ_512B,
      isVf ? PCI_EXP_DEVCTL_BCR_FLR : PF_DEVCTL_RW,
    );
    cfg.define(
      off + PCI_EXP_DEVSTA,
      2,
      0,
      0,
      PCI_EXP_DEVSTA_CED | PCI_EXP_DEVSTA_NFED | PCI_EXP_DEVSTA_FED | PCI_EXP_DEVSTA_URD,
    );
    // Everything from Link Capabilities on (link, slot, root, *2 registers) reads zero.
    cfg.onWrite(off + PCI_EXP_DEVCTL, 2, () => {
      const v = cfg.get(off + PCI_EXP_DEVCTL, 2);
      if ((v & PCI_EXP_DEVCTL_BCR_FLR) === 0) return;
      cfg.set(off + PCI_EXP_DEVCTL, 2, v & ~PCI_EXP_DEVCTL_BCR_FLR);
      requestFlr();
    });
  }

  /** Bits an FLR leaves alone (PCIe 6.6.2: Max_Payload_Size is not reset by FLR). */
  preservedAcrossFlr(): PreservedField[] {
    return [{ off: this.offset + PCI_EXP_DEVCTL, size: 2, mask: PCI_EXP_DEVCTL_PAYLOAD }];
  }
}
