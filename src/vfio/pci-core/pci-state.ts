/**
 * The part of a function's config state pci_save_state / pci_restore_state carry across a
 * reset: Command, cache line size, BARs, ROM BAR, Interrupt Line and PCIe Device Control 1/2.
 * (MSI is restored separately from the interrupt setup, as pci_restore_msi_state does.)
 */
import type { PciFunction } from '../../hw/pci/function.js';
import {
  PCI_BASE_ADDRESS_0,
  PCI_CACHE_LINE_SIZE,
  PCI_COMMAND,
  PCI_EXP_DEVCTL,
  PCI_EXP_DEVCTL2,
  PCI_INTERRUPT_LINE,
  PCI_ROM_ADDRESS,
  PCI_STD_NUM_BARS,
} from '../../hw/pci/regs.js';

export interface SavedPciState {
  command: number;
  cacheLine: number;
  bars: number[];
  rom: number;
  intLine: number;
  devctl: number;
  devctl2: number;
}

export function savePciState(fn: PciFunction): SavedPciState {
  const bars: number[] = [];
  for (let i = 0; i < PCI_STD_NUM_BARS; i++) bars.push(fn.configRead(PCI_BASE_ADDRESS_0 + 4 * i, 4));
  return {
    command: fn.configRead(PCI_COMMAND, 2),
    cacheLine: fn.configRead(PCI_CACHE_LINE_SIZE, 1),
    bars,
    rom: fn.configRead(PCI_ROM_ADDRESS, 4),
    intLine: fn.configRead(PCI_INTERRUPT_LINE, 1),
    devctl: fn.configRead(fn.pcie.offset + PCI_EXP_DEVCTL, 2),
    devctl2: fn.configRead(fn.pcie.offset + PCI_EXP_DEVCTL2, 2),
  };
}

/** pci_restore_state order: PCIe control first, then the header with the BARs before Command. */
export function restorePciState(fn: PciFunction, s: SavedPciState): void {
  if (!fn.present) return;
  fn.configWrite(fn.pcie.offset + PCI_EXP_DEVCTL, 2, s.devctl);
  fn.configWrite(fn.pcie.offset + PCI_EXP_DEVCTL2, 2, s.devctl2);
  fn.configWrite(PCI_INTERRUPT_LINE, 1, s.intLine);
  fn.configWrite(PCI_ROM_ADDRESS, 4, s.rom);
  for (let i = PCI_STD_NUM_BARS - 1; i >= 0; i--) fn.configWrite(PCI_BASE_ADDRESS_0 + 4 * i, 4, s.bars[i]!);
  fn.configWrite(PCI_CACHE_LINE_SIZE, 1, s.cacheLine);
  fn.configWrite(PCI_COMMAND, 2, s.command);
}
