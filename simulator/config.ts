import { z } from "zod";

/** Where state is kept when `STRIPE_SIM_STATE_FILE` is not set. */
export const DEFAULT_STATE_FILE = ".data/stripe-sim/state.json";

/** The signing secret when `STRIPE_WEBHOOK_SECRET` is not set; the app must use the same one. */
export const DEFAULT_WEBHOOK_SECRET = "whsec_local_simulator_secret";

/** The simulator's configuration, read once from the environment. */
export interface SimulatorConfig {
  host: string;
  /** 0 lets the OS pick a free port; the chosen one is printed in the "listening" line. */
  port: number;
  /** Null keeps state in memory only. */
  stateFile: string | null;
  webhookUrl: string | null;
  webhookSecret: string;
  webhookMaxAttempts: number;
  webhookRetryBaseMs: number;
  webhookRetryMaxMs: number;
  webhookTimeoutMs: number;
}

/** An unset or empty variable means "use the default". */
function integer(min: number, max: number, fallback: number) {
  return z
    .string()
    .optional()
    .transform((value, context) => {
      if (value === undefined || value.trim() === "") {
        return fallback;
      }
      const parsed = Number(value.trim());
      if (!Number.isInteger(parsed) || parsed < min || parsed > max) {
        context.addIssue({
          code: "custom",
          message: `must be an integer from ${min} to ${max}, got "${value}"`,
        });
        return z.NEVER;
      }
      return parsed;
    });
}

const EnvSchema = z.object({
  STRIPE_SIM_HOST: z
    .string()
    .optional()
    .transform((value) =>
      value === undefined || value.trim() === "" ? "127.0.0.1" : value.trim(),
    ),
  STRIPE_SIM_PORT: integer(0, 65_535, 12_111),
  // Empty or ":memory:" turns persistence off; unset uses the default file.
  STRIPE_SIM_STATE_FILE: z
    .string()
    .optional()
    .transform((value) =>
      value === undefined
        ? DEFAULT_STATE_FILE
        : value === "" || value === ":memory:"
          ? null
          : value,
    ),
  STRIPE_SIM_WEBHOOK_URL: z
    .union([z.literal(""), z.url({ protocol: /^https?$/, error: "must be an http(s) URL" })])
    .optional()
    .transform((value) => (value === undefined || value === "" ? null : value)),
  STRIPE_WEBHOOK_SECRET: z
    .string()
    .optional()
    .transform((value) => (value === undefined || value === "" ? DEFAULT_WEBHOOK_SECRET : value)),
  STRIPE_SIM_WEBHOOK_MAX_ATTEMPTS: integer(1, 100, 10),
  STRIPE_SIM_WEBHOOK_RETRY_BASE_MS: integer(1, 3_600_000, 250),
  STRIPE_SIM_WEBHOOK_RETRY_MAX_MS: integer(1, 3_600_000, 5_000),
  STRIPE_SIM_WEBHOOK_TIMEOUT_MS: integer(1, 600_000, 5_000),
});

/** A configuration error whose message names every offending variable. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/**
 * Reads the simulator's configuration from `env`.
 *
 * | Variable | Default |
 * | --- | --- |
 * | `STRIPE_SIM_HOST` | `127.0.0.1` |
 * | `STRIPE_SIM_PORT` | `12111` (`0`: any free port) |
 * | `STRIPE_SIM_STATE_FILE` | `.data/stripe-sim/state.json` (`""` or `:memory:`: no file) |
 * | `STRIPE_SIM_WEBHOOK_URL` | none: events are recorded, not delivered |
 * | `STRIPE_WEBHOOK_SECRET` | `whsec_local_simulator_secret` |
 * | `STRIPE_SIM_WEBHOOK_MAX_ATTEMPTS` | `10` |
 * | `STRIPE_SIM_WEBHOOK_RETRY_BASE_MS` | `250`, doubled per failed attempt |
 * | `STRIPE_SIM_WEBHOOK_RETRY_MAX_MS` | `5000` |
 * | `STRIPE_SIM_WEBHOOK_TIMEOUT_MS` | `5000` |
 *
 * With the defaults a delivery is tried 10 times over about 28 seconds.
 *
 * @throws {ConfigError} naming each invalid variable.
 */
export function loadConfig(env: NodeJS.ProcessEnv): SimulatorConfig {
  const parsed = EnvSchema.safeParse(env);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => `  ${issue.path.join(".")}: ${issue.message}`);
    throw new ConfigError(`Invalid Stripe simulator environment:\n${lines.join("\n")}`);
  }
  const vars = parsed.data;
  if (vars.STRIPE_SIM_WEBHOOK_RETRY_MAX_MS < vars.STRIPE_SIM_WEBHOOK_RETRY_BASE_MS) {
    throw new ConfigError(
      "Invalid Stripe simulator environment:\n  STRIPE_SIM_WEBHOOK_RETRY_MAX_MS: must not be " +
        "smaller than STRIPE_SIM_WEBHOOK_RETRY_BASE_MS",
    );
  }
  return {
    host: vars.STRIPE_SIM_HOST,
    port: vars.STRIPE_SIM_PORT,
    stateFile: vars.STRIPE_SIM_STATE_FILE,
    webhookUrl: vars.STRIPE_SIM_WEBHOOK_URL,
    webhookSecret: vars.STRIPE_WEBHOOK_SECRET,
    webhookMaxAttempts: vars.STRIPE_SIM_WEBHOOK_MAX_ATTEMPTS,
    webhookRetryBaseMs: vars.STRIPE_SIM_WEBHOOK_RETRY_BASE_MS,
    webhookRetryMaxMs: vars.STRIPE_SIM_WEBHOOK_RETRY_MAX_MS,
    webhookTimeoutMs: vars.STRIPE_SIM_WEBHOOK_TIMEOUT_MS,
  };
}
