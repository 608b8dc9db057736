/** The live-migration orchestrator: source and destination VMM sides, verification, timeline. */
export * from './types.js';
export { runSource, describeSource, engineOfDevice } from './source.js';
export { runDestination, type DestinationOptions } from './destination.js';
export { migrateInProcess, type InProcessOptions, type InProcessOutcome } from './in-process.js';
export { verifyMigration, type JobVerdict, type Verification } from './verify.js';
export { buildTimeline, timelineSvg, fmtNs, type Timeline } from './timeline.js';
export { MigrationError, toFailure, describeFailure, type MigrationFailure, type MigrationStep } from './errors.js';
export { resolveMigrationOptions, transferNs, type MigrationOptions, type MigrationProgress } from './options.js';
export type * from './report-types.js';
export { DirtyTracker, type DirtyMode } from './dirty-tracker.js';
export { openSaver, openLoader, probeProtocol, type DeviceSaver, type DeviceLoader, type DeviceProtocol } from './device-channel.js';
export { assignExtraVfs, releaseExtraVfs, withDevices } from './extra-vfs.js';
