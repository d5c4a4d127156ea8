/**
 * cli/commands — one module per group of udrbdadm verbs. Each exports
 * `register(program, getContext)`; this list is the only place that names
 * them all.
 */
import type { Command } from 'commander';
import type { CliContext } from '../context.js';
import { register as registerConfig } from './config.js';

export type GetContext = () => CliContext;
export type RegisterCommands = (program: Command, getContext: GetContext) => void;

export const commandGroups: RegisterCommands[] = [registerConfig];

import { register as registerRuntime } from './runtime.js';
commandGroups.push(registerRuntime);

import { register as registerMeta } from './meta.js';
commandGroups.push(registerMeta);

import { register as registerBoot } from './boot.js';
commandGroups.push(registerBoot);
