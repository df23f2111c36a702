import { type ChildProcess, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import qs from "qs";
import Stripe from "stripe";
import type { z } from "zod";
import { DEFAULT_WEBHOOK_SECRET } from "../../simulator/config.js";
import type { SimulatorEventView, SimulatorList, SimulatorStats } from "../../simulator/control.js";
import type { FaultRule, FaultRuleSchema } from "../../simulator/faults.js";
import type { LoggedRequest } from "../../simulator/request-log.js";
import type { WebhookDelivery } from "../../simulator/state.js";
import type { WebhookSettings } from "../../simulator/webhooks.js";

export type {
  FaultRule,
  LoggedRequest,
  SimulatorEventView,
  SimulatorStats,
  WebhookDelivery,
  WebhookSettings,
};

/** A secret key the simulator accepts (any `sk_test_` key does). */
export const SIMULATOR_SECRET_KEY = "sk_test_simulator";

const PROJECT_ROOT = fileURLToPath(new URL("../../", import.meta.url));
const MAIN_PATH = fileURLToPath(new URL("../../simulator/main.ts", import.meta.url));

/**
 * How long a simulator may take to print its "listening" line. Generous because the first
 * start compiles the TypeScript sources (tsx) and CI machines can be slow.
 */
const STARTUP_TIMEOUT_MS = 20_000;

/** How long `stop()` waits after SIGTERM before it falls back to SIGKILL. */
const STOP_TIMEOUT_MS = 10_000;

/** A fault rule as `POST /_sim/faults` accepts it: every field optional. */
export type FaultRuleInput = z.input<typeof FaultRuleSchema>;

/** Filters of the control listings, sent as a query string (`metadata[key]=value`). */
export interface ObjectFilter {
  status?: string;
  payment_intent?: string;
  charge?: string;
  metadata?: Record<string, string>;
}

/** A typed client of the simulator's `/_sim` control API. */
export interface SimulatorControl {
  /** True when `GET /_sim/health` answers 200. */
  health(): Promise<boolean>;
  stats(): Promise<SimulatorStats>;
  /** Forgets all objects, keys, events, deliveries, faults and webhook settings. */
  reset(): Promise<void>;
  /** Adds a fault rule; returns all rules in force. */
  setFaults(rule: FaultRuleInput): Promise<FaultRule[]>;
  faults(): Promise<FaultRule[]>;
  clearFaults(): Promise<void>;
  /** Changes webhook settings (`url`, `duplicates`, `delay_ms`) for events from now on. */
  configureWebhooks(patch: Partial<WebhookSettings>): Promise<WebhookSettings>;
  /** Queues one more delivery of a stored event. */
  resendEvent(eventId: string): Promise<WebhookDelivery>;
  paymentIntents(filter?: ObjectFilter): Promise<Stripe.PaymentIntent[]>;
  charges(filter?: ObjectFilter): Promise<Stripe.Charge[]>;
  refunds(filter?: ObjectFilter): Promise<Stripe.Refund[]>;
  /** Events, oldest first, each with its webhook deliveries. */
  events(filter?: { type?: string; object_id?: string }): Promise<SimulatorEventView[]>;
  /** The most recent API requests (in memory only; cleared by a restart or reset). */
  requests(filter?: {
    path_prefix?: string;
    method?: string;
    idempotency_key?: string;
  }): Promise<LoggedRequest[]>;
}

/**
 * A control client for a simulator already listening at `baseUrl`
 * (e.g. one started by `npm run stripe-sim`).
 */
export function createSimulatorControl(baseUrl: string): SimulatorControl {
  async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await fetch(new URL(path, baseUrl), {
      method,
      ...(body === undefined
        ? {}
        : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }),
    });
    const text = await response.text();
    if (!response.ok) {
      throw new Error(`${method} ${path} answered ${response.status}: ${text}`);
    }
    return JSON.parse(text) as T;
  }
  async function listing<T>(path: string, filter: object = {}): Promise<T[]> {
    const query = qs.stringify(filter);
    const page = await call<SimulatorList<T>>("GET", query === "" ? path : `${path}?${query}`);
    return page.data;
  }
  return {
    async health() {
      try {
        return (await fetch(new URL("/_sim/health", baseUrl))).ok;
      } catch {
        return false;
      }
    },
    stats: () => call("GET", "/_sim/stats"),
    async reset() {
      await call("POST", "/_sim/reset");
    },
    async setFaults(rule) {
      return (await call<{ faults: FaultRule[] }>("POST", "/_sim/faults", rule)).faults;
    },
    async faults() {
      return (await call<{ faults: FaultRule[] }>("GET", "/_sim/faults")).faults;
    },
    async clearFaults() {
      await call("DELETE", "/_sim/faults");
    },
    configureWebhooks: (patch) => call("POST", "/_sim/webhooks", patch),
    resendEvent: (eventId) =>
      call("POST", `/_sim/events/${encodeURIComponent(eventId)}/resend`, {}),
    paymentIntents: (filter) => listing("/_sim/payment_intents", filter),
    charges: (filter) => listing("/_sim/charges", filter),
    refunds: (filter) => listing("/_sim/refunds", filter),
    events: (filter) => listing("/_sim/events", filter),
    requests: (filter) => listing("/_sim/requests", filter),
  };
}

/** Options of {@link startSimulator}. */
export interface StartSimulatorOptions {
  /** Port to listen on. Default 0: the OS picks a free one (no race with other suites). */
  port?: number;
  /**
   * State file. Default: a file in a fresh temporary directory that `stop()`/`kill()` delete.
   * Pass a path you own to restart a simulator on the same state; `null` keeps state in memory.
   */
  stateFile?: string | null;
  /** Initial webhook endpoint (`STRIPE_SIM_WEBHOOK_URL`). Default: none. */
  webhookUrl?: string;
  /** Signing secret (`STRIPE_WEBHOOK_SECRET`). Default: `whsec_local_simulator_secret`. */
  webhookSecret?: string;
  /** Further environment, e.g. `{ STRIPE_SIM_WEBHOOK_RETRY_BASE_MS: "50" }`. Applied last. */
  env?: Record<string, string>;
}

/** A simulator running as a child process. */
export interface SimulatorProcess {
  /** Base URL, e.g. `http://127.0.0.1:41234`. */
  url: string;
  host: string;
  port: number;
  pid: number;
  stateFile: string | null;
  webhookSecret: string;
  control: SimulatorControl;
  /** A stripe-node client for this simulator, configured as the app configures its own. */
  stripe(config?: Stripe.StripeConfig): Stripe;
  /** Everything the process printed so far (stdout and stderr), for failure messages. */
  output(): string;
  /** SIGTERM, then waits for a clean exit (SIGKILL after 10 s). Resolves to the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL, like a crash: nothing gets a chance to run. Resolves once the process is gone. */
  kill(): Promise<void>;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) {
    return;
  }
  exitHookInstalled = true;
  // A test runner that dies mid-suite must not leave simulators holding ports.
  process.once("exit", () => {
    for (const child of running) {
      child.kill("SIGKILL");
    }
  });
}

function waitForExit(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) {
    return Promise.resolve(child.exitCode);
  }
  return new Promise((resolve) => child.once("exit", (code) => resolve(code)));
}

/**
 * Starts the Stripe simulator (`simulator/main.ts`) as a real child process and resolves once
 * it answers `GET /_sim/health`. It runs `node --import tsx` directly rather than `npm run` or
 * the `tsx` CLI, so the signals sent by `stop()` and `kill()` reach the simulator itself.
 *
 * @example
 * const sim = await startSimulator();
 * const stripe = sim.stripe();
 * await stripe.paymentIntents.create({ amount: 1000, currency: "usd",
 *   payment_method: "pm_card_visa", confirm: true });
 * expect((await sim.control.stats()).charges).toBe(1);
 * await sim.stop();
 */
export async function startSimulator(
  options: StartSimulatorOptions = {},
): Promise<SimulatorProcess> {
  installExitHook();
  const ownedDir =
    options.stateFile === undefined ? await mkdtemp(join(tmpdir(), "stripe-sim-")) : null;
  const stateFile = ownedDir === null ? (options.stateFile ?? null) : join(ownedDir, "state.json");
  const webhookSecret = options.webhookSecret ?? DEFAULT_WEBHOOK_SECRET;
  const host = "127.0.0.1";

  const child = spawn(process.execPath, ["--import", "tsx", MAIN_PATH], {
    cwd: PROJECT_ROOT,
    env: {
      ...process.env,
      STRIPE_SIM_HOST: host,
      STRIPE_SIM_PORT: String(options.port ?? 0),
      STRIPE_SIM_STATE_FILE: stateFile ?? "",
      STRIPE_SIM_WEBHOOK_URL: options.webhookUrl ?? "",
      STRIPE_WEBHOOK_SECRET: webhookSecret,
      ...options.env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  child.once("exit", () => running.delete(child));
  let output = "";
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });
  child.stderr?.setEncoding("utf8").on("data", (chunk: string) => {
    output += chunk;
  });

  const removeOwnedDir = async () => {
    if (ownedDir !== null) {
      await rm(ownedDir, { recursive: true, force: true });
    }
  };

  let url: string;
  try {
    url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(new Error(`stripe simulator did not start within ${STARTUP_TIMEOUT_MS} ms`));
      }, STARTUP_TIMEOUT_MS);
      const onData = () => {
        const match = /listening on (http:\/\/\S+)/.exec(output);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      };
      child.stdout?.on("data", onData);
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`stripe simulator exited during startup (${signal ?? `code ${code}`})`));
      });
    });
  } catch (error) {
    child.kill("SIGKILL");
    await waitForExit(child);
    await removeOwnedDir();
    throw new Error(`${(error as Error).message}\n--- simulator output ---\n${output}`);
  }

  const control = createSimulatorControl(url);
  if (!(await control.health())) {
    child.kill("SIGKILL");
    await waitForExit(child);
    await removeOwnedDir();
    throw new Error(`stripe simulator at ${url} does not answer /_sim/health\n${output}`);
  }
  const port = Number(new URL(url).port);

  return {
    url,
    host,
    port,
    pid: child.pid ?? -1,
    stateFile,
    webhookSecret,
    control,
    stripe: (config = {}) =>
      new Stripe(SIMULATOR_SECRET_KEY, {
        host,
        port,
        protocol: "http",
        maxNetworkRetries: 0,
        ...config,
      }),
    output: () => output,
    async stop() {
      const exited = waitForExit(child);
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), STOP_TIMEOUT_MS);
      const code = await exited;
      clearTimeout(timer);
      await removeOwnedDir();
      return code;
    },
    async kill() {
      const exited = waitForExit(child);
      child.kill("SIGKILL");
      await exited;
      await removeOwnedDir();
    },
  };
}
