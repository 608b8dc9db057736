/**
 * The host's dmesg: a bounded ring of messages from the PCI core and drivers ("pci
 * 0000:75:00.0: 4 VFs already enabled..."). Tests and the CLI read it to explain errors that
 * sysfs reports only as an errno.
 */
export const KERNEL_LOG_SIZE = 512;

export class KernelLog {
  private readonly ring: string[] = [];
  private total = 0;

  /** Appends `<prefix>: <msg>`; the oldest line goes once the ring is full. */
  print(prefix: string, msg: string): void {
    if (this.ring.length === KERNEL_LOG_SIZE) this.ring.shift();
    this.ring.push(`${prefix}: ${msg}`);
    this.total++;
  }

  /** Lines still in the ring, oldest first. */
  get lines(): readonly string[] {
    return this.ring;
  }

  /** Messages ever printed. */
  get count(): number {
    return this.total;
  }

  /** Whether any retained line contains `text`. */
  includes(text: string): boolean {
    return this.ring.some((l) => l.includes(text));
  }
}
