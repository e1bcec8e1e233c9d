/**
 * Runs the router's autoscaler on exactly one router at a time. Every router with autoscaled
 * deployments competes for a lock (leader-elector.ts); the holder runs an Autoscaler — starting
 * from the replica counts its target runs now, as a restarted router does — and stops it when it
 * loses the lock or stops. Every router reports its queues (queue-reports.ts) so the leader scales
 * from the load of all of them, and forwards a scale-from-zero wake to the leader.
 */
import type { Gauge } from 'prom-client';
import type { Logger } from '../../common/logger.js';
import { Autoscaler, type AutoscalerOptions } from '../autoscaler.js';
import type { ScaleTarget } from '../scale-targets/scale-target.js';
import { LeaderElector, type LeaderLock } from './leader-elector.js';
import { QueueBoard, QueueReporter } from './queue-reports.js';
import type { NatsConnection } from '@nats-io/transport-node';

export interface AutoscalerLeadershipOptions {
  readonly nc: NatsConnection;
  readonly routerId: string;
  readonly lock: LeaderLock;
  readonly leaseMs: number;
  /** Where queue reports travel (queueReportSubject). */
  readonly reportSubject: string;
  /** The autoscaler's options, less the target (made per term) and `observe` (given the others' queues). */
  readonly autoscaler: Omit<AutoscalerOptions, 'target' | 'observe'>;
  /** A fresh target for each term as leader (the autoscaler closes its target when it stops). */
  readonly makeTarget: () => Promise<ScaleTarget | undefined>;
  /** This router's own load of a deployment: its queue, and what runs on the replicas. */
  readonly observe: (deployment: string) => { queued: number; inFlight: number; runningReplicas: number };
  /** 1 while this router leads, else 0. */
  readonly leaderGauge: Gauge;
  readonly log: Logger;
}

export class AutoscalerLeadership {
  private readonly elector: LeaderElector;
  private readonly reporter: QueueReporter;
  private autoscaler: Autoscaler | undefined;
  /** Starts and stops of the autoscaler, one after another. */
  private transitions: Promise<void> = Promise.resolve();
  private reportTimer: NodeJS.Timeout | undefined;
  private readonly pendingWakes = new Set<string>();

  constructor(private readonly options: AutoscalerLeadershipOptions) {
    const board = new QueueBoard(options.routerId, 3 * options.autoscaler.intervalMs + 1000);
    this.reporter = new QueueReporter(options.nc, options.reportSubject, board, (d) => this.autoscaler?.wake(d));
    this.elector = new LeaderElector({
      lock: options.lock, leaseMs: options.leaseMs, log: options.log,
      onChange: (leader) => {
        options.leaderGauge.set(leader ? 1 : 0);
        this.transitions = this.transitions.then(() => (leader ? this.lead() : this.follow()));
      },
    });
    options.leaderGauge.set(0);
  }

  get isLeader(): boolean {
    return this.elector.isLeader;
  }

  start(): void {
    this.elector.start();
    this.reportTimer = setInterval(() => this.report(), this.options.autoscaler.intervalMs);
    this.reportTimer.unref();
  }

  /** A request waits for a replica of `deployment`: evaluate it now, here or on the leader. */
  wake(deployment: string): void {
    if (this.autoscaler) {
      this.autoscaler.wake(deployment);
      return;
    }
    this.pendingWakes.add(deployment);
    this.report();
  }

  private report(): void {
    const queued: Record<string, number> = {};
    for (const d of this.options.autoscaler.deployments) queued[d.name] = this.options.observe(d.name).queued;
    this.reporter.publish({ routerId: this.options.routerId, queued, wake: [...this.pendingWakes] });
    this.pendingWakes.clear();
  }

  private async lead(): Promise<void> {
    const board = this.reporter.board;
    try {
      this.autoscaler = await Autoscaler.start({
        ...this.options.autoscaler,
        target: await this.options.makeTarget(),
        observe: (name) => {
          const own = this.options.observe(name);
          return { runningReplicas: own.runningReplicas, totalOngoing: own.queued + board.queuedElsewhere(name, Date.now()) + own.inFlight };
        },
      });
    } catch (err) {
      this.options.log.error({ err: (err as Error).message }, 'could not start the autoscaler as leader');
    }
  }

  private async follow(): Promise<void> {
    const a = this.autoscaler;
    this.autoscaler = undefined;
    await a?.stop();
    // orrery_replicas_desired is the leader's: a former leader's last values would be stale.
    this.options.autoscaler.registry.getSingleMetric('orrery_replicas_desired')?.reset();
  }

  /** Stops competing, stops the autoscaler if it runs here, and releases the lock. */
  async stop(): Promise<void> {
    clearInterval(this.reportTimer);
    await this.elector.stop();
    await this.transitions;
    this.reporter.close();
  }
}
