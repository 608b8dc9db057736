#!/usr/bin/env node
// Entry point of `hisi-acc-sim`; commands are registered in ./commands.ts as they land.
import { Command } from 'commander';
import { registerJobCommand } from './job.js';
import { registerSaveCommand } from './save.js';
import { registerInspectCommand } from './inspect.js';
import { registerDemoCommand } from './demo.js';
import { registerListenCommand } from './listen.js';
import { registerMigrateCommand } from './migrate.js';

const program = new Command();
program.name('hisi-acc-sim').description('Hardware-free HiSilicon ACC device model, VFIO and live migration');
registerJobCommand(program);
registerSaveCommand(program);
registerInspectCommand(program);
registerDemoCommand(program);
registerListenCommand(program);
registerMigrateCommand(program);
await program.parseAsync(process.argv);
