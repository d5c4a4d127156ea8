/**
 * daemon/fault-hook — puts the test fault layer (disk/fault) under the data
 * path of a resource process when, and only when, $UDRBD_FAULT_PLAN is set:
 * it names a JSON plan file (`{node}` in it is replaced by this node's name;
 * a missing file is an empty plan), read at each attach. Control requests
 * for tests then change the plan at run time:
 *   fault.plan {plan}   replace the plan (validated; stalled requests go on)
 *   fault.power-cut {}  drop every write since the last flush, power off
 *   fault.status {}     the plan, counters and unflushed writes, as JSON
 * Without the variable nothing here runs and the verbs are not defined.
 */
import fs from 'node:fs';
import type { BlockDevice } from '../disk/block-device.js';
import { FaultDisk } from '../disk/fault/fault-disk.js';
import { EMPTY_PLAN, type FaultPlan, parsePlan } from '../disk/fault/plan.js';
import { ExitCode, UdrbdError } from '../util/errors.js';
import type { ResourceRuntime } from './runtime.js';

export const FAULT_PLAN_ENV = 'UDRBD_FAULT_PLAN';

export class FaultLayer {
  private disk: FaultDisk | undefined;
  private plan: FaultPlan = EMPTY_PLAN;

  constructor(
    private readonly planPath: string,
    private readonly runtime: ResourceRuntime,
  ) {}

  /** At attach: the data area with the fault layer on top, the plan read from the file. */
  wrap(data: BlockDevice): BlockDevice {
    this.plan = this.readPlan();
    this.disk = new FaultDisk(data, this.plan);
    this.runtime.log.warn({ planPath: this.planPath, rules: this.plan.rules.length, powerCut: this.plan.powerCut === true }, 'test fault layer installed on the backing disk ($UDRBD_FAULT_PLAN)');
    return this.disk;
  }

  private readPlan(): FaultPlan {
    let text: string;
    try {
      text = fs.readFileSync(this.planPath, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return EMPTY_PLAN;
      throw err;
    }
    try {
      return parsePlan(JSON.parse(text) as unknown);
    } catch (err) {
      throw new UdrbdError(`${this.planPath}: ${(err as Error).message} (set by $${FAULT_PLAN_ENV}; fix or remove the file)`, ExitCode.configInvalid);
    }
  }

  defineVerbs(): void {
    const rt = this.runtime;
    rt.defineVerb('fault.plan', async (args) => {
      let plan: FaultPlan;
      try {
        plan = parsePlan(args.plan);
      } catch (err) {
        return { exitCode: ExitCode.usage, stderr: `${(err as Error).message}\n` };
      }
      this.plan = plan;
      this.disk?.setPlan(plan);
      rt.log.warn({ rules: plan.rules.length, powerCut: plan.powerCut === true }, 'test fault plan replaced');
      return { exitCode: 0 };
    });
    rt.defineVerb('fault.power-cut', async () => {
      if (!this.disk) return { exitCode: ExitCode.stateChangeFailed, stderr: 'fault.power-cut: no disk attached\n' };
      const result = await this.disk.powerCut();
      rt.log.warn({ ...result }, 'simulated power cut: unflushed writes dropped, disk off');
      return { exitCode: 0, stdout: `${JSON.stringify(result)}\n` };
    });
    rt.defineVerb('fault.status', async () => ({
      exitCode: 0,
      stdout: `${JSON.stringify({ plan: this.plan, counters: this.disk?.counters ?? null, unflushedWrites: this.disk?.unflushedWrites ?? 0 })}\n`,
    }));
  }
}

/** The fault layer when $UDRBD_FAULT_PLAN is set (its verbs defined), otherwise undefined. */
export function installFaultLayer(runtime: ResourceRuntime, env: NodeJS.ProcessEnv): FaultLayer | undefined {
  const template = env[FAULT_PLAN_ENV];
  if (template === undefined || template === '') return undefined;
  const layer = new FaultLayer(template.replaceAll('{node}', runtime.spec.node), runtime);
  layer.defineVerbs();
  return layer;
}
