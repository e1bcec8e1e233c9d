/** What a benchmark file returns; bench/run.ts adds the machine and writes the result files. */

/** One measured figure against its target. */
export interface Check {
  readonly name: string;
  readonly measured: number;
  readonly unit: string;
  /** The target as people read it, e.g. "≤ 3 ms". */
  readonly target: string;
  readonly pass: boolean;
  readonly note?: string;
}

/** A table for the human-readable report. */
export interface Table {
  readonly title: string;
  readonly columns: readonly string[];
  readonly rows: ReadonlyArray<ReadonlyArray<string | number>>;
  readonly note?: string;
}

export interface BenchResult {
  /** File stem of the results: bench/results/<name>.json and .md. */
  readonly name: string;
  readonly title: string;
  readonly checks: readonly Check[];
  readonly tables: readonly Table[];
  /** Free-form explanations (configs used, where the time goes, what would close a gap). */
  readonly notes: readonly string[];
  /** Every raw figure, for the JSON file. */
  readonly data: Record<string, unknown>;
}

/** A benchmark file, `bench/<name>.bench.ts`. */
export interface BenchModule {
  run(): Promise<BenchResult>;
}
