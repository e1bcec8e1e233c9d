/** A replica's Prometheus metrics (labels: deployment, model — bounded by the config's model list). */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const SECONDS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly modelLoads = new Counter({ name: 'orrery_model_loads_total', help: 'Models loaded by this replica', labelNames: ['deployment', 'model'], registers: [this.registry] });
  readonly modelEvictions = new Counter({ name: 'orrery_model_evictions_total', help: 'Models evicted from this replica (LRU)', labelNames: ['deployment', 'model'], registers: [this.registry] });
  readonly modelLoadSeconds = new Histogram({ name: 'orrery_model_load_duration_seconds', help: 'Time to load a model (read, fuse, create sessions)', labelNames: ['deployment'], buckets: SECONDS, registers: [this.registry] });
  readonly loraModulesFused = new Counter({ name: 'orrery_lora_modules_fused_total', help: 'LoRA modules fused into model weights at load', labelNames: ['deployment', 'model'], registers: [this.registry] });
  readonly modelsLoaded = new Gauge({ name: 'orrery_models_loaded', help: 'Models currently loaded on this replica', labelNames: ['deployment'], registers: [this.registry] });
  readonly modelBytes = new Gauge({ name: 'orrery_model_bytes', help: 'Bytes each loaded model holds on this replica (LoadedModel.sizeBytes: its model files for ONNX stages), counted against max_model_bytes_per_replica', labelNames: ['deployment', 'model'], registers: [this.registry] });
  readonly modelBytesLimit = new Gauge({ name: 'orrery_model_bytes_limit', help: 'max_model_bytes_per_replica of this replica (absent: unlimited)', labelNames: ['deployment'], registers: [this.registry] });
  readonly optimizedModelCacheLoads = new Counter({ name: 'orrery_optimized_model_cache_loads_total', help: 'ONNX Runtime sessions created with optimized_model_cache_dir set, by outcome (hit, miss, recovered, write-failed, bypass)', labelNames: ['deployment', 'outcome'], registers: [this.registry] });
  readonly inFlightItems = new Gauge({ name: 'orrery_replica_in_flight_images', help: 'Images this replica is working on', labelNames: ['deployment'], registers: [this.registry] });
  readonly inFlightBatches = new Gauge({ name: 'orrery_replica_in_flight_batches', help: 'Batches this replica is working on', labelNames: ['deployment'], registers: [this.registry] });
  readonly inFlightBatchesPeak = new Gauge({ name: 'orrery_replica_in_flight_batches_peak', help: 'Most batches this replica has worked on at once since it started (admission keeps it at most max_ongoing_batches)', labelNames: ['deployment'], registers: [this.registry] });
  readonly inFlightItemsPeak = new Gauge({ name: 'orrery_replica_in_flight_images_peak', help: 'Most images this replica has held at once since it started (continuous batching: admission keeps it at most max_batch_size + max_waiting_images)', labelNames: ['deployment'], registers: [this.registry] });
  readonly batchesRefused = new Counter({ name: 'orrery_replica_batches_refused_total', help: 'Batches refused unrun because every max_ongoing_batches slot was taken, or with continuous batching every place for an image (routers requeue them)', labelNames: ['deployment'], registers: [this.registry] });
  readonly batches = new Counter({ name: 'orrery_replica_batches_total', help: 'Batches run by this replica, by outcome', labelNames: ['deployment', 'model', 'outcome'], registers: [this.registry] });
  readonly batchRunSeconds = new Histogram({ name: 'orrery_replica_batch_run_seconds', help: 'Execution time of a batch on the replica (model load excluded)', labelNames: ['deployment'], buckets: SECONDS, registers: [this.registry] });
  readonly runningSetOccupancy = new Histogram({ name: 'orrery_running_set_occupancy', help: 'Images stepping in a running set, observed at every step (continuous batching)', labelNames: ['deployment'], buckets: [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 64], registers: [this.registry] });
  readonly runningSetJoins = new Counter({ name: 'orrery_running_set_joins_total', help: 'Images that joined a running set (their first step)', labelNames: ['deployment'], registers: [this.registry] });
  readonly runningSetLeaves = new Counter({ name: 'orrery_running_set_leaves_total', help: 'Images that left a running set after joining it (finished, failed or cancelled)', labelNames: ['deployment'], registers: [this.registry] });
  readonly runningSetPreemptions = new Counter({ name: 'orrery_running_set_preemptions_total', help: 'Bulk images paused at a step boundary to make room for online images', labelNames: ['deployment'], registers: [this.registry] });
  readonly images = new Counter({ name: 'orrery_replica_images_total', help: 'Images produced by this replica', labelNames: ['deployment', 'model'], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'orrery_worker_' });
  }
}
