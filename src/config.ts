import { z } from "zod";

const positiveInt = z.coerce.number().int().positive();
const nonNegativeInt = z.coerce.number().int().nonnegative();

/** The environment this service reads, parsed once at start. */
export const ConfigSchema = z.object({
  PORT: z.coerce.number().int().min(0).max(65_535).default(3000),
  HOST: z.string().min(1).default("127.0.0.1"),
  DATABASE_URL: z
    .url({ protocol: /^postgres(ql)?$/, error: "must be a postgres:// or postgresql:// URL" })
    .optional(),
  DATABASE_POOL_MAX: positiveInt.max(1000).default(10),
  MIGRATE_ON_START: z.stringbool().default(true),
  DATA_DIR: z.string().min(1).default(".data"),
  DEMO_API_KEY: z
    .string()
    .regex(/^[A-Za-z0-9_-]{16,128}$/, "must be 16-128 characters of A-Z a-z 0-9 _ -")
    .optional(),
  IDEMPOTENCY_TTL_MS: positiveInt.default(24 * 60 * 60 * 1000),
  IDEMPOTENCY_WAIT_MS: nonNegativeInt.max(60_000).default(5000),
  IDEMPOTENCY_CACHE_BYTES: nonNegativeInt.default(16 * 1024 * 1024),
  LOG_LEVEL: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
  SHUTDOWN_TIMEOUT_MS: positiveInt.default(10_000),
  /**
   * Time between the end of one cleanup run of the server and the start of the next; 0 leaves
   * retention to `npm run cleanup`. A minute: an expired record is already treated as new, so
   * deleting it sooner only saves disk, and a minute's worth of expiries is a run of a few
   * batches.
   */
  CLEANUP_INTERVAL_MS: nonNegativeInt.max(24 * 60 * 60 * 1000).default(60_000),
  /**
   * Records deleted per cleanup statement, each its own transaction. A thousand take a few
   * milliseconds, which bounds how long a request re-executing a key being deleted can wait for
   * that batch, and a million-record backlog is still only a thousand statements.
   */
  CLEANUP_BATCH_SIZE: positiveInt.max(100_000).default(1000),
  STRIPE_SECRET_KEY: z
    .string()
    .regex(
      /^(sk|rk)_(test|live)_[A-Za-z0-9_]+$/,
      "must be a Stripe secret key (sk_test_..., sk_live_...)",
    )
    .optional(),
  STRIPE_API_URL: z
    .url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" })
    .optional(),
  /** Defaults to the simulator's secret; required with a `STRIPE_SECRET_KEY` for Stripe itself. */
  STRIPE_WEBHOOK_SECRET: z.string().min(1).default("whsec_local_simulator_secret"),
  PROVIDER_TIMEOUT_MS: positiveInt.max(120_000).default(10_000),
  PROVIDER_MAX_NETWORK_RETRIES: z.coerce.number().int().min(0).max(5).default(1),
  PAYMENT_LEASE_MS: positiveInt.default(30_000),
  COMPLETER_INTERVAL_MS: nonNegativeInt.default(10_000),
  COMPLETER_GRACE_MS: nonNegativeInt.default(10_000),
});

/**
 * Time a provider call may take with all the SDK's own retries (each waits up to 2 s first).
 * A payment's lease must outlast it, or a retry could take over an attempt that is still alive.
 */
export function providerCallBudgetMs(
  config: Pick<Config, "PROVIDER_TIMEOUT_MS" | "PROVIDER_MAX_NETWORK_RETRIES">,
): number {
  return (
    config.PROVIDER_TIMEOUT_MS * (config.PROVIDER_MAX_NETWORK_RETRIES + 1) +
    2000 * config.PROVIDER_MAX_NETWORK_RETRIES
  );
}

export type Config = z.infer<typeof ConfigSchema>;

/** Every setting at its default, for texts that state them (the OpenAPI document). */
export const CONFIG_DEFAULTS: Config = ConfigSchema.parse({});

/** A configuration value that failed validation; its message names every bad variable. */
export class ConfigError extends Error {
  override name = "ConfigError";
}

/**
 * Parses the environment. Empty strings count as unset, so `FOO=` in a shell or compose file
 * falls back to the default rather than failing on an empty value.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const input = Object.fromEntries(
    Object.keys(ConfigSchema.shape).map((name) => [name, env[name] === "" ? undefined : env[name]]),
  );
  const parsed = ConfigSchema.superRefine((config, ctx) => {
    if (config.PAYMENT_LEASE_MS <= providerCallBudgetMs(config)) {
      ctx.addIssue({
        code: "custom",
        path: ["PAYMENT_LEASE_MS"],
        message: `must exceed the longest provider call, ${providerCallBudgetMs(config)} ms with PROVIDER_TIMEOUT_MS and PROVIDER_MAX_NETWORK_RETRIES`,
      });
    }
    // The simulator's default secret is public: real Stripe must be given the endpoint's own.
    if (
      config.STRIPE_SECRET_KEY &&
      !config.STRIPE_API_URL &&
      input.STRIPE_WEBHOOK_SECRET === undefined
    ) {
      ctx.addIssue({
        code: "custom",
        path: ["STRIPE_WEBHOOK_SECRET"],
        message:
          "must be set with STRIPE_SECRET_KEY: real Stripe signs webhooks with the endpoint's own secret (whsec_...)",
      });
    }
  }).safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0]);
      return `  ${name}=${JSON.stringify(input[name])}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  }
  return parsed.data;
}
