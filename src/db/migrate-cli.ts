import { ConfigError, loadConfig } from "../config.js";
import { createLogger } from "../logger.js";
import { migrateDatabase } from "./migrate.js";
import { resolveDatabase } from "./resolve.js";

/** `npm run db:migrate`: applies pending migrations; safe to run from several processes at once. */
async function main() {
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, process.stderr);
  const database = await resolveDatabase(config, logger);
  try {
    const layout = await migrateDatabase(database.url);
    process.stderr.write(`migrations applied to ${database.description}\n`);
    if (layout.kind === "distributed") {
      process.stderr.write(
        layout.changed.length > 0
          ? `Citus: distributed ${layout.changed.join(", ")}\n`
          : "Citus: every table already distributed\n",
      );
    } else if (layout.kind === "no-workers") {
      process.stderr.write("Citus extension without workers: the tables stay local\n");
    }
  } finally {
    await database.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    error instanceof ConfigError ? `${error.message}\n` : `migration failed: ${String(error)}\n`,
  );
  process.exitCode = 1;
});
