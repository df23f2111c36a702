import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type Stripe from "stripe";
import { z } from "zod";

/**
 * Stripe forgets idempotency keys after 24 hours; records older than this are dropped when a
 * state file is loaded, so a long-lived state file does not grow without bound.
 */
export const IDEMPOTENCY_KEY_TTL_MS = 24 * 60 * 60 * 1000;

/** The stored outcome of the first request made with one `Idempotency-Key`. */
export interface IdempotencyRecord {
  key: string;
  path: string;
  /** Canonical JSON of the parsed form parameters; a replay must match it exactly. */
  fingerprint: string;
  status: number;
  /** The exact response text, replayed byte for byte. */
  body: string;
  request_id: string;
  /** Epoch milliseconds. */
  created: number;
}

/** Where one webhook delivery stands. `failed` means every attempt was used up. */
export type DeliveryStatus = "pending" | "succeeded" | "failed";

/** One delivery of one event to the webhook URL (an event has several when duplicated). */
export interface WebhookDelivery {
  id: string;
  event_id: string;
  url: string;
  status: DeliveryStatus;
  attempts: number;
  /** Epoch milliseconds of the next attempt while pending, otherwise null. */
  next_attempt_at: number | null;
  last_attempt_at: number | null;
  last_status_code: number | null;
  last_error: string | null;
  /** Epoch milliseconds. */
  created: number;
}

/** Counters that cannot be derived from the stored objects. */
export interface SimCounters {
  api_requests: number;
  idempotent_replays: number;
  webhook_attempts: number;
}

/** Everything the simulator knows. Maps keep insertion order and are safe for any key. */
export interface SimState {
  paymentIntents: Map<string, Stripe.PaymentIntent>;
  charges: Map<string, Stripe.Charge>;
  refunds: Map<string, Stripe.Refund>;
  events: Map<string, Stripe.Event>;
  idempotencyKeys: Map<string, IdempotencyRecord>;
  webhookDeliveries: Map<string, WebhookDelivery>;
  counters: SimCounters;
}

/** A state with no objects and zeroed counters. */
export function emptyState(): SimState {
  return {
    paymentIntents: new Map(),
    charges: new Map(),
    refunds: new Map(),
    events: new Map(),
    idempotencyKeys: new Map(),
    webhookDeliveries: new Map(),
    counters: { api_requests: 0, idempotent_replays: 0, webhook_attempts: 0 },
  };
}

function stripeObject<T>(object: string) {
  return z.custom<T>(
    (value) =>
      typeof value === "object" &&
      value !== null &&
      (value as { object?: unknown }).object === object &&
      typeof (value as { id?: unknown }).id === "string",
    { message: `expected a Stripe ${object} object` },
  );
}

const IdempotencyRecordSchema = z.object({
  key: z.string(),
  path: z.string(),
  fingerprint: z.string(),
  status: z.int(),
  body: z.string(),
  request_id: z.string(),
  created: z.number(),
});

const WebhookDeliverySchema = z.object({
  id: z.string(),
  event_id: z.string(),
  url: z.string(),
  status: z.enum(["pending", "succeeded", "failed"]),
  attempts: z.int(),
  next_attempt_at: z.number().nullable(),
  last_attempt_at: z.number().nullable(),
  last_status_code: z.int().nullable(),
  last_error: z.string().nullable(),
  created: z.number(),
});

/** The on-disk format. The objects are the simulator's own output: only envelopes are checked. */
const StateFileSchema = z.object({
  version: z.literal(1),
  payment_intents: z.record(z.string(), stripeObject<Stripe.PaymentIntent>("payment_intent")),
  charges: z.record(z.string(), stripeObject<Stripe.Charge>("charge")),
  refunds: z.record(z.string(), stripeObject<Stripe.Refund>("refund")),
  events: z.record(z.string(), stripeObject<Stripe.Event>("event")),
  idempotency_keys: z.record(z.string(), IdempotencyRecordSchema),
  webhook_deliveries: z.record(z.string(), WebhookDeliverySchema),
  counters: z.object({
    api_requests: z.int(),
    idempotent_replays: z.int(),
    webhook_attempts: z.int(),
  }),
});

type StateFile = z.infer<typeof StateFileSchema>;

function toFile(state: SimState): StateFile {
  return {
    version: 1,
    payment_intents: Object.fromEntries(state.paymentIntents),
    charges: Object.fromEntries(state.charges),
    refunds: Object.fromEntries(state.refunds),
    events: Object.fromEntries(state.events),
    idempotency_keys: Object.fromEntries(state.idempotencyKeys),
    webhook_deliveries: Object.fromEntries(state.webhookDeliveries),
    counters: { ...state.counters },
  };
}

function fromFile(file: StateFile, now: number): SimState {
  const idempotencyKeys = new Map(
    Object.entries(file.idempotency_keys).filter(
      ([, record]) => now - record.created < IDEMPOTENCY_KEY_TTL_MS,
    ),
  );
  return {
    paymentIntents: new Map(Object.entries(file.payment_intents)),
    charges: new Map(Object.entries(file.charges)),
    refunds: new Map(Object.entries(file.refunds)),
    events: new Map(Object.entries(file.events)),
    idempotencyKeys,
    webhookDeliveries: new Map(Object.entries(file.webhook_deliveries)),
    counters: file.counters,
  };
}

async function readStateFile(path: string): Promise<SimState | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      return null;
    }
    throw error;
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new Error(`State file ${path} is not valid JSON: ${(error as Error).message}`);
  }
  const parsed = StateFileSchema.safeParse(json);
  if (!parsed.success) {
    throw new Error(
      `State file ${path} is not a simulator state:\n${z.prettifyError(parsed.error)}`,
    );
  }
  return fromFile(parsed.data, Date.now());
}

/**
 * The simulator's state, kept in memory and, when a file is given, persisted to it.
 *
 * Every write replaces the file atomically (write a temporary file, then rename it over the
 * old one), so a simulator killed at any moment leaves either the previous or the next
 * complete state, never a torn one. The file is not fsynced: it must survive the process being
 * killed, not the machine losing power.
 *
 * Writes are group-committed: `persist()` resolves once a write that *started after the call*
 * has finished, and all callers waiting at the same time share one write. Under a burst of
 * requests the file is rewritten once per batch instead of once per request.
 *
 * @example
 * const store = await SimStore.open(".data/stripe-sim/state.json");
 * store.state.paymentIntents.set(pi.id, pi);
 * await store.persist(); // only now may the response be sent
 */
export class SimStore {
  /** The live state. Replaced wholesale by `reset()`, so read it through the store each time. */
  state: SimState;
  /** The state file, or null when persistence is off. */
  readonly file: string | null;
  #queued: Promise<void> | null = null;
  #chain: Promise<void> = Promise.resolve();

  private constructor(file: string | null, state: SimState) {
    this.file = file;
    this.state = state;
  }

  /**
   * Loads `file` (creating its directory) or starts empty when it does not exist yet.
   * Throws when the file exists but is not a simulator state, rather than silently losing it.
   * `null` keeps everything in memory only.
   */
  static async open(file: string | null): Promise<SimStore> {
    if (file === null) {
      return new SimStore(null, emptyState());
    }
    await mkdir(dirname(file), { recursive: true });
    return new SimStore(file, (await readStateFile(file)) ?? emptyState());
  }

  /** Resolves once every change made before this call is on disk (immediately without a file). */
  persist(): Promise<void> {
    const file = this.file;
    if (file === null) {
      return Promise.resolve();
    }
    if (this.#queued !== null) {
      return this.#queued;
    }
    const write = this.#chain.then(() => {
      this.#queued = null;
      return this.#writeSnapshot(file);
    });
    this.#queued = write;
    this.#chain = write.catch(() => undefined);
    return write;
  }

  /** Forgets every object, key, delivery and counter. Call `persist()` afterwards. */
  reset(): void {
    this.state = emptyState();
  }

  async #writeSnapshot(file: string): Promise<void> {
    // Serialised synchronously, before the first await, so the snapshot contains exactly the
    // changes made before this write started.
    const text = JSON.stringify(toFile(this.state));
    const temporary = `${file}.${process.pid}.tmp`;
    await writeFile(temporary, text);
    await rename(temporary, file);
  }
}
