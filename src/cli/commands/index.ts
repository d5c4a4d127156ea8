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

import { register as registerEvents } from './events.js';
commandGroups.push(registerEvents);

import { register as registerVersion } from './version.js';
commandGroups.push(registerVersion);

import { register as registerWaitSync } from './wait-sync.js';
commandGroups.push(registerWaitSync);
import { register as registerMetrics } from './metrics.js';
commandGroups.push(registerMetrics);
import { register as registerAdjust } from './adjust.js';
commandGroups.push(registerAdjust);
import { register as registerBoot } from './boot.js';
commandGroups.push(registerBoot);
