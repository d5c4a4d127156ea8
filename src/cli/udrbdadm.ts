#!/usr/bin/env node
/** cli/udrbdadm — the `udrbdadm` executable; all logic is in cli/main. */
import { main } from './main.js';

process.exitCode = await main(process.argv.slice(2));
