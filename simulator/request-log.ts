/** One API request as `GET /_sim/requests` reports it. */
export interface LoggedRequest {
  id: string;
  method: string;
  path: string;
  status: number | null;
  idempotency_key: string | null;
  idempotent_replayed: boolean;
  /** The injected fault, if any. */
  fault: "error_500" | "lose_response" | null;
  /** Epoch milliseconds. */
  received_at: number;
}

/**
 * The most recent API requests, oldest first. Kept in memory only, so tests can assert what
 * the app sent (for instance that a retry reused its `Idempotency-Key`).
 */
export class RequestLog {
  readonly #capacity: number;
  #entries: LoggedRequest[] = [];

  constructor(capacity: number) {
    this.#capacity = capacity;
  }

  add(entry: LoggedRequest): void {
    this.#entries.push(entry);
    if (this.#entries.length > this.#capacity) {
      this.#entries.splice(0, this.#entries.length - this.#capacity);
    }
  }

  list(): LoggedRequest[] {
    return [...this.#entries];
  }

  clear(): void {
    this.#entries = [];
  }
}
