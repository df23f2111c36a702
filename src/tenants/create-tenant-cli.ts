import { parseArgs } from "node:util";
import { ConfigError, loadConfig } from "../config.js";
import { openDatabase } from "../db/client.js";
import { migrateDatabase } from "../db/migrate.js";
import { resolveDatabase } from "../db/resolve.js";
import { createLogger } from "../logger.js";
import { createTenant } from "./tenants.queries.js";

const USAGE = "usage: npm run --silent tenant:create -- <name>";

/**
 * Creates a tenant and prints its new API key as the only line on stdout, so scripts can
 * capture it: `KEY=$(npm run --silent tenant:create -- acme)`. Everything else goes to stderr.
 */
async function main() {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: { help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    process.stderr.write(`${USAGE}\n`);
    return;
  }
  const name = positionals.join(" ").trim();
  if (!name || name.length > 200) {
    process.stderr.write(`a tenant name of 1-200 characters is required\n${USAGE}\n`);
    process.exitCode = 2;
    return;
  }
  const config = loadConfig();
  const logger = createLogger(config.LOG_LEVEL, process.stderr);
  const database = await resolveDatabase(config, logger);
  try {
    if (config.MIGRATE_ON_START) await migrateDatabase(database.url);
    const { db, close } = openDatabase(database.url, { max: 1 });
    try {
      const { tenant, apiKey } = await createTenant(db, { name });
      process.stderr.write(`created tenant ${tenant.id} (${tenant.name}); its API key follows\n`);
      process.stdout.write(`${apiKey}\n`);
    } finally {
      await close();
    }
  } finally {
    await database.stop();
  }
}

main().catch((error: unknown) => {
  process.stderr.write(
    error instanceof ConfigError
      ? `${error.message}\n`
      : `tenant:create failed: ${String(error)}\n`,
  );
  process.exitCode = 1;
});
