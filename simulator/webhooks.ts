import Stripe from "stripe";
import { newId, unixNow } from "./ids.js";
import type { SimStore, WebhookDelivery } from "./state.js";

/** The events the simulator emits. */
export type SimulatedEvent =
  | Stripe.PaymentIntentSucceededEvent
  | Stripe.PaymentIntentPaymentFailedEvent
  | Stripe.ChargeRefundedEvent;

/** What an operation supplies for an event; the envelope (`id`, `created`, ...) is added here. */
export type EventPayload = {
  [T in SimulatedEvent["type"]]: Pick<Extract<SimulatedEvent, { type: T }>, "type" | "data">;
}[SimulatedEvent["type"]];

/** The API request that caused an event, as Stripe reports it in `event.request`. */
export interface EventRequest {
  id: string;
  idempotency_key: string | null;
}

/** Runtime knobs, changed through `POST /_sim/webhooks`. */
export interface WebhookSettings {
  /** Where events are POSTed; null records events without delivering them. */
  url: string | null;
  /** How many separate deliveries each new event gets (at-least-once means "maybe more"). */
  duplicates: number;
  /** How long a new delivery waits before its first attempt. */
  delay_ms: number;
}

/** Options of {@link WebhookDispatcher}. */
export interface WebhookDispatcherOptions {
  store: SimStore;
  /** Initial endpoint URL (`STRIPE_SIM_WEBHOOK_URL`); null delivers nothing. */
  url: string | null;
  /** Signing secret (`STRIPE_WEBHOOK_SECRET`). */
  secret: string;
  /** Attempts per delivery before it is marked failed (`STRIPE_SIM_WEBHOOK_MAX_ATTEMPTS`). */
  maxAttempts: number;
  /** Delay after the first failed attempt; doubles after each further failure. */
  retryBaseMs: number;
  /** Upper bound of the retry delay. */
  retryMaxMs: number;
  /** How long one attempt may take before it counts as failed. */
  timeoutMs: number;
  /** Receives one line per failed attempt. Default: discard. */
  log?: (line: string) => void;
}

/**
 * Deliveries in flight at once. Bounds the sockets a burst of events can open against the
 * receiver; deliveries beyond it wait for a free slot.
 */
const MAX_CONCURRENT_DELIVERIES = 16;

/** The delay before attempt `attempts + 1`, after `attempts` failed ones: exponential, capped. */
export function retryDelayMs(attempts: number, baseMs: number, maxMs: number): number {
  return Math.min(baseMs * 2 ** (attempts - 1), maxMs);
}

/**
 * Records events and delivers them to the webhook URL, signed like Stripe signs them, at
 * least once: each delivery is retried with exponential backoff while the receiver answers
 * non-2xx or cannot be reached, until it succeeds or `maxAttempts` is used up.
 *
 * Deliveries live in the store, so pending ones survive a restart. Before each attempt the
 * store is persisted, so an event is never delivered for an object that a crash could still
 * take back. Delivery never runs inside an API request: `publish` only schedules it.
 */
export class WebhookDispatcher {
  readonly #options: WebhookDispatcherOptions;
  #settings: WebhookSettings;
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #controllers = new Map<string, AbortController>();
  #timer: NodeJS.Timeout | null = null;
  #stopped = false;

  constructor(options: WebhookDispatcherOptions) {
    this.#options = options;
    this.#settings = this.#defaultSettings();
  }

  /** The current runtime settings. */
  get settings(): WebhookSettings {
    return { ...this.#settings };
  }

  /** Changes some settings; affects events published from now on. */
  configure(patch: Partial<WebhookSettings>): WebhookSettings {
    this.#settings = { ...this.#settings, ...patch };
    return this.settings;
  }

  /**
   * Back to the settings the process started with, and abandons attempts in flight so nothing
   * from before a `POST /_sim/reset` reaches the receiver afterwards.
   */
  reset(): void {
    this.#settings = this.#defaultSettings();
    for (const controller of this.#controllers.values()) {
      controller.abort();
    }
  }

  /** Resumes the deliveries left pending in the store (e.g. by a previous process). */
  start(): void {
    this.#wake();
  }

  /** Stops delivering; attempts cut short stay pending and resume on the next start. */
  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    for (const controller of this.#controllers.values()) {
      controller.abort();
    }
    await Promise.allSettled(this.#inFlight.values());
  }

  /** Records an event caused by `request` and schedules its deliveries. */
  publish(payload: EventPayload, request: EventRequest, created: number): Stripe.Event {
    const { url } = this.#settings;
    const event: Stripe.Event = {
      id: newId("evt"),
      object: "event",
      api_version: Stripe.API_VERSION,
      created,
      livemode: false,
      pending_webhooks: url === null ? 0 : 1,
      request,
      ...payload,
    };
    this.#options.store.state.events.set(event.id, event);
    if (url !== null) {
      for (let copy = 0; copy < this.#settings.duplicates; copy += 1) {
        this.#addDelivery(event.id, url);
      }
      this.#wake();
    }
    return event;
  }

  /**
   * Delivers a stored event once more, as "Resend" in the Stripe dashboard does.
   * Returns null when there is no webhook URL to send it to.
   */
  resend(eventId: string): WebhookDelivery | null {
    const { url } = this.#settings;
    if (url === null) {
      return null;
    }
    const delivery = this.#addDelivery(eventId, url);
    this.#wake();
    return delivery;
  }

  #defaultSettings(): WebhookSettings {
    return { url: this.#options.url, duplicates: 1, delay_ms: 0 };
  }

  #addDelivery(eventId: string, url: string): WebhookDelivery {
    const now = Date.now();
    const delivery: WebhookDelivery = {
      id: newId("whd"),
      event_id: eventId,
      url,
      status: "pending",
      attempts: 0,
      next_attempt_at: now + this.#settings.delay_ms,
      last_attempt_at: null,
      last_status_code: null,
      last_error: null,
      created: now,
    };
    this.#options.store.state.webhookDeliveries.set(delivery.id, delivery);
    return delivery;
  }

  #isDue(delivery: WebhookDelivery): delivery is WebhookDelivery & { next_attempt_at: number } {
    return (
      delivery.status === "pending" &&
      delivery.next_attempt_at !== null &&
      !this.#inFlight.has(delivery.id)
    );
  }

  /** Arms the timer for the earliest pending delivery. */
  #wake(): void {
    if (this.#stopped || this.#inFlight.size >= MAX_CONCURRENT_DELIVERIES) {
      return;
    }
    if (this.#timer !== null) {
      clearTimeout(this.#timer);
      this.#timer = null;
    }
    let earliest = Number.POSITIVE_INFINITY;
    for (const delivery of this.#options.store.state.webhookDeliveries.values()) {
      if (this.#isDue(delivery)) {
        earliest = Math.min(earliest, delivery.next_attempt_at);
      }
    }
    if (earliest !== Number.POSITIVE_INFINITY) {
      this.#timer = setTimeout(() => this.#run(), Math.max(0, earliest - Date.now()));
    }
  }

  #run(): void {
    this.#timer = null;
    const now = Date.now();
    for (const delivery of this.#options.store.state.webhookDeliveries.values()) {
      if (this.#inFlight.size >= MAX_CONCURRENT_DELIVERIES) {
        break;
      }
      if (this.#isDue(delivery) && delivery.next_attempt_at <= now) {
        this.#inFlight.set(delivery.id, this.#attempt(delivery));
      }
    }
    this.#wake();
  }

  async #attempt(delivery: WebhookDelivery): Promise<void> {
    const { store, secret, timeoutMs, maxAttempts, retryBaseMs, retryMaxMs } = this.#options;
    const controller = new AbortController();
    this.#controllers.set(delivery.id, controller);
    try {
      delivery.attempts += 1;
      delivery.last_attempt_at = Date.now();
      store.state.counters.webhook_attempts += 1;
      await store.persist();
      const event = store.state.events.get(delivery.event_id);
      if (event === undefined) {
        // The state was reset while this delivery waited.
        delivery.status = "failed";
        delivery.next_attempt_at = null;
        return;
      }
      const failure = await this.#send(delivery.url, event, secret, {
        timeoutMs,
        signal: controller.signal,
      });
      if (controller.signal.aborted) {
        return;
      }
      delivery.last_status_code = failure.statusCode;
      delivery.last_error = failure.error;
      if (failure.error === null) {
        delivery.status = "succeeded";
        delivery.next_attempt_at = null;
      } else if (delivery.attempts >= maxAttempts) {
        delivery.status = "failed";
        delivery.next_attempt_at = null;
        this.#log(`${this.#describe(delivery)} failed for good: ${failure.error}`);
      } else {
        const delay = retryDelayMs(delivery.attempts, retryBaseMs, retryMaxMs);
        delivery.next_attempt_at = Date.now() + delay;
        this.#log(`${this.#describe(delivery)} failed: ${failure.error}; retrying in ${delay} ms`);
      }
      await store.persist();
    } catch (error) {
      // The state file could not be written. Back off like after a failed attempt instead of
      // spinning on a broken disk.
      if (delivery.status === "pending") {
        delivery.next_attempt_at =
          Date.now() + retryDelayMs(delivery.attempts, retryBaseMs, retryMaxMs);
      }
      this.#log(`${this.#describe(delivery)} could not be recorded: ${(error as Error).message}`);
    } finally {
      this.#controllers.delete(delivery.id);
      this.#inFlight.delete(delivery.id);
      this.#wake();
    }
  }

  /** POSTs the event; `error` is null for a 2xx answer. */
  async #send(
    url: string,
    event: Stripe.Event,
    secret: string,
    limits: { timeoutMs: number; signal: AbortSignal },
  ): Promise<{ statusCode: number | null; error: string | null }> {
    // Stripe sends pretty-printed JSON and signs each attempt with the time of that attempt.
    const payload = JSON.stringify(event, null, 2);
    const signature = Stripe.webhooks.generateTestHeaderString({
      payload,
      secret,
      timestamp: unixNow(),
    });
    try {
      const response = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json; charset=utf-8",
          "user-agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
          "stripe-signature": signature,
        },
        body: payload,
        redirect: "manual",
        signal: AbortSignal.any([limits.signal, AbortSignal.timeout(limits.timeoutMs)]),
      });
      await response.arrayBuffer();
      const ok = response.status >= 200 && response.status < 300;
      return { statusCode: response.status, error: ok ? null : `HTTP ${response.status}` };
    } catch (error) {
      const cause = (error as { cause?: { code?: string } }).cause;
      return { statusCode: null, error: cause?.code ?? (error as Error).message };
    }
  }

  #describe(delivery: WebhookDelivery): string {
    return `webhook delivery ${delivery.id} of ${delivery.event_id} (attempt ${delivery.attempts})`;
  }

  #log(line: string): void {
    this.#options.log?.(line);
  }
}
