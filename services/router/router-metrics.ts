/**
 * The router's Prometheus metrics (CONVENTIONS §8: `orrery_` prefix, base units, bounded labels —
 * deployment, pipeline, method, code; never request ids or prompts).
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Priority } from '../common/work-item.js';

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
const BATCH_BUCKETS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64];

export class RouterMetrics {
  readonly registry = new Registry();
  private readonly requests = new Counter({ name: 'orrery_requests_total', help: 'gRPC requests by method and final status code', labelNames: ['method', 'code'], registers: [this.registry] });
  private readonly latency = new Histogram({ name: 'orrery_request_duration_seconds', help: 'gRPC request latency', labelNames: ['method', 'pipeline'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly errors = new Counter({ name: 'orrery_errors_total', help: 'Errors returned to clients by Orrery error code', labelNames: ['code'], registers: [this.registry] });
  private readonly queueWaitH = new Histogram({ name: 'orrery_queue_wait_seconds', help: 'Time an image waited in the deployment queue before its batch was sent, by priority (online: Generate callers; bulk: job items)', labelNames: ['deployment', 'priority'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly batchSize = new Histogram({ name: 'orrery_batch_size', help: 'Images per dispatched batch', labelNames: ['deployment'], buckets: BATCH_BUCKETS, registers: [this.registry] });
  private readonly batches = new Counter({ name: 'orrery_batches_total', help: 'Batches dispatched, by model affinity (hit: the replica held the model)', labelNames: ['deployment', 'affinity'], registers: [this.registry] });
  private readonly batchDuration = new Histogram({ name: 'orrery_batch_duration_seconds', help: 'Batch round trip seen by the router (send to reply)', labelNames: ['deployment'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  private readonly retries = new Counter({ name: 'orrery_batch_retries_total', help: 'Images put back in the queue after their batch was lost or refused', labelNames: ['deployment', 'reason'], registers: [this.registry] });
  private readonly shedImages = new Counter({ name: 'orrery_deadline_shed_images_total', help: 'Images failed with DEADLINE_EXCEEDED before dispatch: their deadline was nearer than the fastest recent batch of their kind', labelNames: ['deployment'], registers: [this.registry] });
  private readonly images = new Counter({ name: 'orrery_images_total', help: 'Images produced, per deployment (stage) and priority (online: Generate callers; bulk: job items)', labelNames: ['deployment', 'priority'], registers: [this.registry] });
  private readonly pipelineImages = new Counter({ name: 'orrery_pipeline_images_total', help: 'Images returned to clients, per pipeline', labelNames: ['pipeline'], registers: [this.registry] });
  private readonly qcChecks = new Counter({ name: 'orrery_qc_checks_total', help: 'Quality-gate checks of generated images (every attempt), per pipeline and result (passed, failed)', labelNames: ['pipeline', 'result'], registers: [this.registry] });
  private readonly qcRerolls = new Counter({ name: 'orrery_qc_rerolls_total', help: 'Images generated again after failing the quality gate, per pipeline', labelNames: ['pipeline'], registers: [this.registry] });
  private readonly stageDuration = new Histogram({ name: 'orrery_stage_duration_seconds', help: 'Time a pipeline stage took for a request (queue + run), per pipeline and stage deployment', labelNames: ['pipeline', 'deployment'], buckets: LATENCY_BUCKETS, registers: [this.registry] });
  readonly queueDepth = new Gauge({ name: 'orrery_queue_depth', help: 'Images waiting in the deployment queue', labelNames: ['deployment'], registers: [this.registry] });
  readonly replicas = new Gauge({ name: 'orrery_replicas', help: 'Replicas seen by the router, by state', labelNames: ['deployment', 'state'], registers: [this.registry] });
  readonly autoscalerLeader = new Gauge({ name: 'orrery_autoscaler_leader', help: '1 while this router holds the autoscaler lease and runs the autoscaler (one router at a time), else 0', registers: [this.registry] });
  readonly inFlight = new Gauge({ name: 'orrery_in_flight_images', help: 'Images in batches sent and not yet answered', labelNames: ['deployment'], registers: [this.registry] });
  private readonly room = new Gauge({ name: 'orrery_running_set_room_images', help: 'Continuous batching: images the deployment\'s replicas can take now (running-set capacity − occupied − waiting − sent and not yet reported, summed over replicas), as this router last saw it', labelNames: ['deployment'], registers: [this.registry] });

  private readonly jobs = new Gauge({ name: 'orrery_jobs', help: 'Bulk jobs this router knows, by state', labelNames: ['state'], registers: [this.registry] });
  private readonly jobItems = new Counter({ name: 'orrery_job_items_total', help: 'Bulk job item outcomes committed by this router (succeeded, failed, cancelled, expired; retried: an attempt failed and the item waits to retry)', labelNames: ['outcome'], registers: [this.registry] });
  private readonly jobItemsRemaining = new Gauge({ name: 'orrery_job_items_remaining', help: 'Items of unfinished bulk jobs not finished yet (queued or running), over all jobs: with orrery_job_items_per_second, the time to finish them', registers: [this.registry] });
  private readonly jobItemsRate = new Gauge({ name: 'orrery_job_items_per_second', help: 'Finished bulk job items per second over the last minute, over all jobs', registers: [this.registry] });
  private readonly jobsFinished = new Counter({ name: 'orrery_jobs_finished_total', help: 'Bulk jobs this router finalized, by final state', labelNames: ['state'], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'orrery_router_' });
  }

  request(method: string, code: string, pipeline: string, seconds: number): void {
    this.requests.inc({ method, code });
    this.latency.observe({ method, pipeline }, seconds);
  }
  error(code: string): void {
    this.errors.inc({ code });
  }
  queueWait(deployment: string, seconds: number, priority: Priority): void {
    this.queueWaitH.observe({ deployment, priority }, seconds);
  }
  batchDispatched(deployment: string, size: number, affinity: 'hit' | 'miss'): void {
    this.batchSize.observe({ deployment }, size);
    this.batches.inc({ deployment, affinity });
  }
  batchFinished(deployment: string, seconds: number): void {
    this.batchDuration.observe({ deployment }, seconds);
  }
  batchRetried(deployment: string, reason: string, n: number): void {
    if (n > 0) this.retries.inc({ deployment, reason }, n);
  }
  runningSetRoom(deployment: string, images: number): void {
    this.room.set({ deployment }, images);
  }
  shed(deployment: string, n: number): void {
    this.shedImages.inc({ deployment }, n);
  }
  imageDone(deployment: string, priority: Priority): void {
    this.images.inc({ deployment, priority });
  }
  stageTiming(pipeline: string, deployment: string, seconds: number): void {
    this.stageDuration.observe({ pipeline, deployment }, seconds);
  }
  /** Jobs per state (every state of the lifecycle is set, 0 when none) and the items/s over all jobs. */
  jobsByState(states: ReadonlyMap<string, number>, itemsPerSecond: number, itemsRemaining: number): void {
    for (const state of ['validating', 'in_progress', 'paused', 'finalizing', 'completed', 'expiring', 'expired', 'cancelling', 'cancelled', 'deleting']) this.jobs.set({ state }, states.get(state) ?? 0);
    this.jobItemsRate.set(itemsPerSecond);
    this.jobItemsRemaining.set(itemsRemaining);
  }
  jobItem(outcome: string): void {
    this.jobItems.inc({ outcome });
  }
  jobFinished(state: string): void {
    this.jobsFinished.inc({ state });
  }
  /** One quality check of an image attempt (pipeline-runner.ts QcMetrics). */
  qcChecked(pipeline: string, passed: boolean): void {
    this.qcChecks.inc({ pipeline, result: passed ? 'passed' : 'failed' });
  }
  qcRerolled(pipeline: string): void {
    this.qcRerolls.inc({ pipeline });
  }
  pipelineImagesDone(pipeline: string, n: number): void {
    this.pipelineImages.inc({ pipeline }, n);
  }
}
