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
});

export type Config = z.infer<typeof ConfigSchema>;

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
  const parsed = ConfigSchema.safeParse(input);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((issue) => {
      const name = String(issue.path[0]);
      return `  ${name}=${JSON.stringify(input[name])}: ${issue.message}`;
    });
    throw new ConfigError(`Invalid configuration:\n${lines.join("\n")}`);
  }
  return parsed.data;
}
