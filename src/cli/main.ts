#!/usr/bin/env node
// Entry point of `hisi-acc-sim`; commands are registered in ./commands.ts as they land.
import { Command } from 'commander';

const program = new Command();
program.name('hisi-acc-sim').description('Hardware-free HiSilicon ACC device model, VFIO and live migration');
await program.parseAsync(process.argv);
