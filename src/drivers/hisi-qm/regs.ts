/**
 * Old path of the QM host-driver registers, kept so existing imports keep working: the
 * header is src/drivers/common/qm-regs.ts, shared with hisi-acc-vfio-pci.
 */
export * from '../common/qm-regs.js';
