import type { KeyRef, StoredResponse } from "./store.js";

/** What a replay needs of a finished record. */
export interface CachedRecord {
  fingerprint: string;
  /** `requestText` of a request known to have this fingerprint. */
  requestText: string;
  response: StoredResponse;
  /**
   * `requestText` of the last request known to differ from this fingerprint (a 422), so that a
   * client retrying the same wrong request is answered without parsing and hashing it again.
   */
  mismatchedText?: string;
  /** When the record expires, by this process's clock. */
  expiresAt: number;
}

/**
 * A replay must not be answered from memory this close to the record's expiry, so that clock
 * drift between this process and PostgreSQL can never stretch the retention period.
 */
const EXPIRY_MARGIN_MS = 1000;
/** A rough per-entry overhead (key, object, map slot) added to the body's size. */
const ENTRY_OVERHEAD_BYTES = 256;

/**
 * Finished records this process has replayed, by tenant and key, least recently used first out.
 * A finished record never changes until it expires (nothing updates it, and neither a new
 * execution nor cleanup touches it before then), so once a key has been retried, its further
 * retries (or a 422) are answered from memory without asking the database, on every instance
 * alike. First executions are not kept: most keys are never retried, and caching them all would
 * churn memory for nothing. Bounded by total bytes.
 */
export class ReplayCache {
  private readonly entries = new Map<string, CachedRecord & { bytes: number }>();
  private bytes = 0;

  constructor(private readonly maxBytes: number) {}

  get(ref: KeyRef): CachedRecord | undefined {
    const id = cacheKey(ref);
    const entry = this.entries.get(id);
    if (!entry) return undefined;
    this.entries.delete(id);
    if (entry.expiresAt - EXPIRY_MARGIN_MS <= Date.now()) {
      this.bytes -= entry.bytes;
      return undefined;
    }
    this.entries.set(id, entry);
    return entry;
  }

  /** Remembers a finished record that expires in `expiresInMs`. */
  set(ref: KeyRef, record: Omit<CachedRecord, "expiresAt">, expiresInMs: number): void {
    const bytes =
      record.response.body.length +
      record.requestText.length +
      ref.key.length +
      ref.tenantId.length +
      ENTRY_OVERHEAD_BYTES;
    if (bytes > this.maxBytes / 4) return;
    const id = cacheKey(ref);
    const previous = this.entries.get(id);
    if (previous) {
      this.entries.delete(id);
      this.bytes -= previous.bytes;
    }
    this.entries.set(id, { ...record, expiresAt: Date.now() + expiresInMs, bytes });
    this.bytes += bytes;
    for (const [oldest, entry] of this.entries) {
      if (this.bytes <= this.maxBytes) break;
      this.entries.delete(oldest);
      this.bytes -= entry.bytes;
    }
  }

  /** Notes that `requestText` differs from the cached record's request; keeps one such text. */
  setMismatched(ref: KeyRef, requestText: string): void {
    const entry = this.entries.get(cacheKey(ref));
    if (!entry) return;
    const grown = requestText.length - (entry.mismatchedText?.length ?? 0);
    if (entry.bytes + grown > this.maxBytes / 4) return;
    entry.mismatchedText = requestText;
    entry.bytes += grown;
    this.bytes += grown;
  }

  get size(): number {
    return this.entries.size;
  }
}

function cacheKey(ref: KeyRef): string {
  return `${ref.tenantId}\u0000${ref.key}`;
}
