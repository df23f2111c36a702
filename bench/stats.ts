/** What one measured phase produced, HTTP or direct SQL alike. */
export interface PhaseResult {
  /** Stable identifier, used in `--phases` and the JSON output. */
  id: string;
  /** What the table calls it. */
  label: string;
  /** Requests to the server, or transactions run straight through postgres.js. */
  kind: "http" | "sql";
  /** Completed operations (responses or committed transactions) in the measured window. */
  count: number;
  elapsedSeconds: number;
  perSecond: number;
  p50Ms: number;
  p99Ms: number;
  /** Failed operations: connection errors, timeouts, unexpected statuses, thrown transactions. */
  errorCount: number;
  /** Human-readable findings of the phase's checks; empty when everything was as expected. */
  problems: string[];
  /** Facts the checks established, e.g. "42 orders = 42 × 201". */
  notes: string[];
  cpu?: CpuShare;
  /** Largest resident memory of the process that served an HTTP phase (server or peer). */
  rssBytes?: number;
}

/** CPU time per operation in microseconds, by consumer, over the measured window. */
export interface CpuShare {
  serverUs?: number;
  benchUs: number;
  postgresUs?: number;
  /** How busy the whole machine was, in percent of all its cores. */
  machineBusyPercent: number;
  /** Of which not the server, this process or the benchmark database's backends. */
  otherPercent?: number;
}

/**
 * Latency summary from raw samples (milliseconds): nearest-rank percentiles over the sorted
 * samples, so sub-millisecond values keep their resolution (autocannon's histogram rounds
 * to whole milliseconds).
 */
export function percentiles(samples: number[]): { p50: number; p99: number } {
  if (samples.length === 0) return { p50: Number.NaN, p99: Number.NaN };
  const sorted = Float64Array.from(samples).sort();
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil(p * sorted.length) - 1)];
  return { p50: at(0.5) ?? Number.NaN, p99: at(0.99) ?? Number.NaN };
}

/** Counts occurrences of each distinct message. */
export class Tally {
  readonly counts = new Map<string, number>();

  add(message: string, times = 1): void {
    this.counts.set(message, (this.counts.get(message) ?? 0) + times);
  }

  get total(): number {
    let sum = 0;
    for (const n of this.counts.values()) sum += n;
    return sum;
  }

  /** "3 × message" lines, most frequent first. */
  lines(): string[] {
    return [...this.counts].sort((a, b) => b[1] - a[1]).map(([message, n]) => `${n} × ${message}`);
  }
}
