import { randomUUID } from "node:crypto";
import autocannon from "autocannon";
import { Tally } from "./stats.js";

/** One response as a check sees it; header names are lower case. */
export interface SeenResponse {
  /** The `Idempotency-Key` the request carried, when `keys` gave it. */
  key?: string;
  status: number;
  body: string;
  header(name: string): string | undefined;
}

/** The request a phase repeats, and what its answers must look like. */
export interface HttpRequestSpec {
  method: "GET" | "POST";
  path: string;
  headers?: Record<string, string>;
  body?: string;
  /** Every other status counts as an error. */
  expectStatus: number;
  /** Inspects each response; returns what is wrong with it, if anything. */
  check?: (response: SeenResponse) => string | undefined;
  /** Gives every request its `Idempotency-Key`. */
  keys?: KeySource;
}

/** How hard and how long to drive the server. */
export interface HttpLoadOptions {
  baseUrl: string;
  connections: number;
  seconds: number;
  /** Keep every response's latency; off during warm-up, which only primes the JIT and pools. */
  sampleLatency: boolean;
}

/** What one autocannon run measured and found. */
export interface HttpRun {
  responses: number;
  elapsedSeconds: number;
  /** Milliseconds, one per response, from autocannon's high-resolution timer. */
  latencies: number[];
  /** Responses by status. */
  statuses: Map<number, number>;
  /** Connection errors, timeouts, unexpected statuses and failed checks. */
  problems: Tally;
}

/** Where a phase's requests get their idempotency keys. */
export interface KeySource {
  next(): string;
  answered(key: string, status: number): void;
}

/** A fixed set of keys used in turn, so concurrent requests rarely share one. */
export class RotatingKeys implements KeySource {
  private index = 0;

  constructor(private readonly keys: readonly string[]) {}

  next(): string {
    const key = this.keys[this.index % this.keys.length] as string;
    this.index += 1;
    return key;
  }

  answered(): void {}
}

/**
 * The idempotency keys of a unique-key phase: which were sent, which were answered with 201,
 * and which were still in flight when autocannon closed the connections at the end of a run
 * (their transactions may still commit on the server after that).
 */
export class KeyLedger implements KeySource {
  private readonly pending = new Set<string>();
  readonly created: string[] = [];

  next(): string {
    const key = `bench-${randomUUID()}`;
    this.pending.add(key);
    return key;
  }

  answered(key: string, status: number): void {
    this.pending.delete(key);
    if (status === 201) this.created.push(key);
  }

  /** Sent and never answered. */
  get unanswered(): string[] {
    return [...this.pending];
  }
}

/**
 * Drives `spec` with autocannon at a fixed number of connections for `seconds`, counting every
 * response by status and running `spec.check` on it, so a phase answering errors cannot pass
 * for a fast one.
 */
export async function runHttp(spec: HttpRequestSpec, options: HttpLoadOptions): Promise<HttpRun> {
  const problems = new Tally();
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let responses = 0;

  const request: autocannon.Request = {
    method: spec.method,
    path: spec.path,
    headers: spec.headers ?? {},
    ...(spec.body === undefined ? {} : { body: spec.body }),
  };
  const { keys, check } = spec;
  if (keys) {
    // autocannon builds a new request object per call, so adding a header here is safe; the
    // connection's context carries the key to that request's response (one in flight each).
    request.setupRequest = (next, context) => {
      const key = keys.next();
      (context as { key?: string }).key = key;
      return { ...next, headers: { ...next.headers, "idempotency-key": key } };
    };
  }
  if (keys || check) {
    request.onResponse = (status, body, context, headers) => {
      const key = (context as { key?: string }).key;
      if (key !== undefined) keys?.answered(key, status);
      const header = (name: string) => headerValue(headers ?? {}, name);
      const problem = check?.({ ...(key === undefined ? {} : { key }), status, body, header });
      if (problem) problems.add(problem);
    };
  }

  let instance: autocannon.Instance | undefined;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url: `${options.baseUrl}${spec.path}`,
        connections: options.connections,
        duration: options.seconds,
        requests: [request],
      },
      (error, result) => (error ? reject(error) : resolve(result)),
    );
  });
  instance?.on("response", (_client, status, _bytes, ms) => {
    responses += 1;
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    if (options.sampleLatency) latencies.push(ms);
    if (status !== spec.expectStatus)
      problems.add(`HTTP ${status} (expected ${spec.expectStatus})`);
  });
  const result = await finished;
  if (result.errors > 0) {
    problems.add(`connection error or timeout (${result.timeouts} timeouts)`, result.errors);
  }
  return { responses, elapsedSeconds: result.duration, latencies, statuses, problems };
}

function headerValue(headers: NonNullable<autocannon.Request["headers"]>, name: string) {
  for (const [key, value] of Object.entries(headers)) {
    if (key.toLowerCase() === name) return Array.isArray(value) ? value.join(", ") : value;
  }
  return undefined;
}
