/** Public surface of the QM device model. */
export { QmDevice, type QmDeviceOptions, type DeviceSnapshot } from './qm-device.js';
export {
  QmFunction, type QmLatencies, type FunctionSnapshot, type QpSnapshot, type EqSnapshot,
  type DoorbellStats,
} from './qm-function.js';
export { AuditLog, type AuditEntry, type BarHalf } from './audit.js';
export { DeviceFaults, FunctionFaults, type FaultPoint, type FaultPointKind, type FaultTap, type IfcStuck } from './faults.js';
export type { Engine, EngineContext } from './engine-contract.js';
export * from './registers.js';
export * from './contexts.js';
export { encodeSqcVft, encodeCqcVft, decodeSqcVft, planVftAssignment, type VftEntry } from './vft.js';
