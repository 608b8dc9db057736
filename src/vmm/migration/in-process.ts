/**
 * Both sides of a migration in one process, joined by an in-process pipe (optionally with a
 * fault on the source's outgoing bytes). Each side runs exactly the code it runs across
 * processes; only the link differs.
 */
import { createPipePair } from '../transport/in-process.js';
import { withFaults, type FaultPlan } from '../transport/fault.js';
import { runDestination, type DestinationOptions } from './destination.js';
import type { MigrationOptions } from './options.js';
import type { DestinationReport, SourceReport } from './report-types.js';
import { runSource } from './source.js';
import type { MigrationEndpoint } from './types.js';

export interface InProcessOptions extends MigrationOptions {
  destination?: DestinationOptions;
  /** Breaks the source -> destination byte stream (drop or corrupt at an offset). */
  fault?: FaultPlan;
}

export interface InProcessOutcome {
  source: SourceReport;
  destination: DestinationReport;
}

export async function migrateInProcess(source: MigrationEndpoint, dest: MigrationEndpoint, opts: InProcessOptions = {}): Promise<InProcessOutcome> {
  const [a, b] = createPipePair(['migration source', 'migration destination']);
  const out = opts.fault ? withFaults(a, opts.fault) : a;
  const [s, d] = await Promise.all([runSource(source, out, opts), runDestination(dest, b, opts.destination)]);
  return { source: s, destination: d };
}
