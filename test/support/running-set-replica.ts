/**
 * A replica for router tests of continuous batching (issue 12), speaking the worker protocol
 * over a real NATS connection: it takes every BatchRequest it is sent, keeps a running set of at
 * most `capacity` images that advance one step per `stepMs` (online images join first), reports
 * `running_set_capacity/occupied/waiting` in its heartbeats and answers a batch when all its
 * images have left the set. It records what it saw so tests can check the router's dispatching.
 */
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { subjects as makeSubjects } from '../../services/common/subjects.js';
import { wire, type BatchRequest } from '../../services/common/wire.js';

export interface RunningSetReplicaOptions {
  readonly natsUrl: string;
  readonly id: string;
  readonly deployment: string;
  readonly models: readonly string[];
  readonly capacity: number;
  readonly stepMs: number;
  readonly heartbeatMs: number;
  /** Steps are taken only once this resolves (tests hold the set still while they look at it). */
  readonly gate?: Promise<void>;
}

interface Image { readonly batchId: string; readonly key: string; readonly online: boolean; stepsLeft: number }
interface Batch { readonly req: BatchRequest; readonly reply: (data: Uint8Array) => void; left: number }

export class RunningSetReplica {
  /** Per received batch: its size and how many images were stepping when it arrived. */
  readonly received: Array<{ batchId: string; items: number; occupiedAtArrival: number }> = [];
  /** `requestId/imageIndex` of every image received, in order (a duplicate would show twice). */
  readonly itemsReceived: string[] = [];
  /** The most images held at once (stepping + waiting to join). */
  maxHeld = 0;
  private readonly running: Image[] = [];
  private readonly waiting: Image[] = [];
  private readonly batches = new Map<string, Batch>();
  private seq = 0;
  private timers: NodeJS.Timeout[] = [];
  private gateOpen: boolean;
  private stopped = false;

  private constructor(private readonly nc: NatsConnection, private readonly o: RunningSetReplicaOptions) {
    this.gateOpen = !o.gate;
    void o.gate?.then(() => (this.gateOpen = true));
  }

  static async start(o: RunningSetReplicaOptions): Promise<RunningSetReplica> {
    const nc = await connect({ servers: o.natsUrl });
    const r = new RunningSetReplica(nc, o);
    const s = makeSubjects('orrery');
    nc.subscribe(s.batch(o.id), { callback: (_e, msg) => r.onBatch(wire.batchRequest.decode(msg.data), (d) => msg.respond(d)) });
    nc.subscribe(s.heartbeatRequest, { callback: () => r.heartbeat() });
    await nc.flush();
    r.heartbeat();
    r.timers.push(setInterval(() => r.heartbeat(), o.heartbeatMs), setInterval(() => r.step(), o.stepMs));
    return r;
  }

  get occupied(): number {
    return this.running.length;
  }

  private onBatch(req: BatchRequest, reply: (d: Uint8Array) => void): void {
    this.received.push({ batchId: req.batchId, items: req.items.length, occupiedAtArrival: this.running.length });
    this.batches.set(req.batchId, { req, reply, left: req.items.length });
    for (const it of req.items) {
      this.itemsReceived.push(`${it.requestId}/${it.imageIndex}`);
      const img = { batchId: req.batchId, key: `${it.requestId}/${it.imageIndex}`, online: it.priority !== 'bulk', stepsLeft: it.steps };
      if (img.online) this.waiting.splice(this.waiting.filter((w) => w.online).length, 0, img);
      else this.waiting.push(img);
    }
    this.join();
  }

  /** Waiting images join while the set has room (online ones are first in the join queue). */
  private join(): void {
    while (this.running.length < this.o.capacity && this.waiting.length > 0) this.running.push(this.waiting.shift()!);
    this.maxHeld = Math.max(this.maxHeld, this.running.length + this.waiting.length);
  }

  private step(): void {
    if (!this.gateOpen) return;
    for (const img of [...this.running]) {
      if (--img.stepsLeft > 0) continue;
      this.running.splice(this.running.indexOf(img), 1);
      const b = this.batches.get(img.batchId)!;
      if (--b.left === 0) this.answer(b);
    }
    this.join();
  }

  private answer(b: Batch): void {
    this.batches.delete(b.req.batchId);
    const results = b.req.items.map((it) => ({
      requestId: it.requestId, imageIndex: it.imageIndex, width: it.width, height: it.height, mimeType: 'image/png',
      image: { inline: new TextEncoder().encode(`${this.o.id}:${it.requestId}/${it.imageIndex}`), size: 0 }, error: null,
    }));
    b.reply(wire.batchReply.encode({ batchId: b.req.batchId, attempt: b.req.attempt, replicaId: this.o.id, results, error: null, runSeconds: 0.01, loadSeconds: 0 }));
  }

  heartbeat(): void {
    if (this.stopped || this.nc.isClosed()) return;
    this.nc.publish(makeSubjects('orrery').heartbeat(this.o.deployment), wire.heartbeat.encode({
      replicaId: this.o.id, deployment: this.o.deployment, state: 'running', loadedModels: [...this.o.models],
      inFlightBatches: [...this.batches.keys()], inFlightItems: this.running.length + this.waiting.length,
      maxOngoingBatches: 1, maxModelsPerReplica: 1, seq: ++this.seq, intervalMs: this.o.heartbeatMs, loadingModel: '',
      runningSetCapacity: this.o.capacity, runningSetOccupied: this.running.length, runningSetWaiting: this.waiting.length,
      inFlightOnlineItems: [...this.running, ...this.waiting].filter((img) => img.online).length,
    }));
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.stopped = true;
    await this.nc.close();
  }
}
