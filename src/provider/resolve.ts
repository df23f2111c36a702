import { join } from "node:path";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { startBundledSimulator } from "./bundled-simulator.js";
import { type PaymentProvider, stripeProvider } from "./stripe-provider.js";

/** The key the simulator is called with; it accepts any `sk_test_` key. */
export const SIMULATOR_SECRET_KEY = "sk_test_simulator";

export interface ResolvedProvider {
  provider: PaymentProvider;
  /** For the start banner: never a key. */
  description: string;
  /** Where the bundled simulator should send webhooks, once the server listens. */
  setWebhookUrl(url: string): Promise<void>;
  stop(): Promise<void>;
}

/**
 * Which payment provider to talk to:
 * - neither `STRIPE_SECRET_KEY` nor `STRIPE_API_URL`: the bundled simulator, started here;
 * - `STRIPE_API_URL`: that Stripe-compatible API (a simulator of its own, as in compose);
 * - `STRIPE_SECRET_KEY` alone: Stripe itself.
 */
export async function resolveProvider(config: Config, logger: Logger): Promise<ResolvedProvider> {
  const common = {
    webhookSecret: config.STRIPE_WEBHOOK_SECRET,
    timeoutMs: config.PROVIDER_TIMEOUT_MS,
    maxNetworkRetries: config.PROVIDER_MAX_NETWORK_RETRIES,
  };
  if (!config.STRIPE_SECRET_KEY && !config.STRIPE_API_URL) {
    const simulator = await startBundledSimulator({
      // Apart from the standalone simulator's `.data/stripe-sim/`: run side by side, they would
      // overwrite each other's state.
      stateFile: join(config.DATA_DIR, "bundled-stripe-sim", "state.json"),
      webhookSecret: config.STRIPE_WEBHOOK_SECRET,
      logger,
    });
    return {
      provider: stripeProvider({
        ...common,
        secretKey: SIMULATOR_SECRET_KEY,
        apiUrl: simulator.url,
      }),
      description: `bundled Stripe simulator at ${simulator.url}`,
      setWebhookUrl: (url) => simulator.setWebhookUrl(url),
      stop: () => simulator.stop(),
    };
  }
  const apiUrl = config.STRIPE_API_URL;
  return {
    provider: stripeProvider({
      ...common,
      secretKey: config.STRIPE_SECRET_KEY ?? SIMULATOR_SECRET_KEY,
      apiUrl,
    }),
    description: apiUrl ? `Stripe-compatible API at ${apiUrl}` : "Stripe",
    setWebhookUrl: async () => {},
    stop: async () => {},
  };
}
