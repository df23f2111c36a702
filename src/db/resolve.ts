import { join } from "node:path";
import type { Config } from "../config.js";
import type { Logger } from "../logger.js";
import { startEmbeddedPostgres } from "./embedded.js";

export interface ResolvedDatabase {
  url: string;
  /** How to describe it to a human: never the URL, which may hold a password. */
  description: string;
  /** Stops the embedded server if this process started it. */
  stop(): Promise<void>;
}

/**
 * `DATABASE_URL` when set; otherwise the embedded PostgreSQL under `DATA_DIR/postgres`, started
 * by this process or shared with the process of ours that already runs it.
 */
export async function resolveDatabase(
  config: Pick<Config, "DATABASE_URL" | "DATA_DIR">,
  logger: Logger,
): Promise<ResolvedDatabase> {
  if (config.DATABASE_URL) {
    const { host, pathname } = new URL(config.DATABASE_URL);
    return { url: config.DATABASE_URL, description: `${host}${pathname}`, stop: async () => {} };
  }
  const dataDir = join(config.DATA_DIR, "postgres");
  const embedded = await startEmbeddedPostgres({
    dataDir,
    onLog: (line) => logger.debug({ source: "postgres" }, line),
  });
  return {
    url: embedded.url,
    description: `embedded PostgreSQL in ${dataDir}${embedded.owned ? "" : " (shared with a running server)"}`,
    stop: () => embedded.stop(),
  };
}
