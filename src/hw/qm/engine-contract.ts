/**
 * The engine interface the QM calls (defined by src/hw/engines/engine.ts). Re-exported as a
 * type only: the QM never constructs an engine, it is handed one.
 */
export type { Engine, EngineContext } from '../engines/engine.js';
