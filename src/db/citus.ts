import type postgres from "postgres";

/** The table every tenant table references; replicated to every node on Citus. */
export const REFERENCE_TABLES = ["tenants"] as const;

/** The column every tenant table is distributed by. */
export const DISTRIBUTION_COLUMN = "tenant_id";

export type CitusLayout =
  /** No `citus` extension: plain PostgreSQL, nothing done. */
  | { kind: "plain" }
  /** The extension is there but no worker is registered: the tables stay local. */
  | { kind: "no-workers" }
  /** Distributed; `changed` lists the tables this call distributed (empty on a rerun). */
  | { kind: "distributed"; changed: string[] };

/**
 * The tenant tables of the `public` schema (every table with a `tenant_id` column except the
 * reference tables), parents before the tables whose foreign keys point at them: Citus accepts
 * a foreign key between distributed tables only once the referenced table is distributed.
 */
export async function tenantTables(client: postgres.Sql): Promise<string[]> {
  const tables = await client<{ name: string }[]>`
    SELECT c.relname AS name FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = ${DISTRIBUTION_COLUMN}
      AND NOT a.attisdropped
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
      AND c.relname <> ALL(${REFERENCE_TABLES as unknown as string[]})
    ORDER BY c.relname`;
  const edges = await client<{ child: string; parent: string }[]>`
    SELECT DISTINCT c.relname AS child, p.relname AS parent FROM pg_constraint k
    JOIN pg_class c ON c.oid = k.conrelid
    JOIN pg_class p ON p.oid = k.confrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE k.contype = 'f' AND n.nspname = 'public' AND c.oid <> p.oid`;
  const names = tables.map((t) => t.name);
  const ordered: string[] = [];
  const visit = (name: string, path: Set<string>) => {
    if (ordered.includes(name) || path.has(name)) return;
    path.add(name);
    for (const edge of edges) {
      if (edge.child === name && names.includes(edge.parent)) visit(edge.parent, path);
    }
    ordered.push(name);
  };
  for (const name of names) visit(name, new Set());
  return ordered;
}

/**
 * Gives the schema its distributed layout when the database is a Citus coordinator with
 * workers: the reference tables replicated to every node, every tenant table hash-distributed
 * by `tenant_id` and co-located with the others, so one tenant's rows of every table live on
 * one node and the foreign keys hold on each shard. Runs after the migrations; a table already
 * hash-distributed is left alone, so a rerun changes nothing and a later migration's new
 * tenant table (which Citus makes a Citus-local table when it references `tenants`) is
 * distributed by the next run. On plain PostgreSQL it only reads `pg_extension`.
 *
 * `client` must be a one-connection client: the setting below is per session.
 */
export async function applyCitusLayout(client: postgres.Sql): Promise<CitusLayout> {
  const [ext] = await client<{ citus: boolean }[]>`
    SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') AS citus`;
  if (!ext?.citus) return { kind: "plain" };
  const [nodes] = await client<{ workers: number }[]>`
    SELECT count(*)::int AS workers FROM pg_dist_node
    WHERE groupid <> 0 AND noderole = 'primary' AND isactive`;
  if (!nodes || nodes.workers === 0) return { kind: "no-workers" };

  const done = new Map(
    (
      await client<{ name: string; method: string }[]>`
        SELECT logicalrelid::regclass::text AS name, partmethod AS method FROM pg_dist_partition`
    ).map((row) => [row.name, row.method]),
  );
  const changed: string[] = [];
  // Left on, create_reference_table would turn every table with a foreign key to `tenants`
  // into a Citus-local table, and those can then never reference a distributed table.
  await client`SET citus.enable_local_reference_table_foreign_keys TO off`;
  for (const table of REFERENCE_TABLES) {
    if (done.has(table)) continue;
    await client`SELECT create_reference_table(${table})`;
    changed.push(table);
  }
  const tables = await tenantTables(client);
  let anchor = tables.find((table) => done.get(table) === "h");
  for (const table of tables) {
    // A new table with a foreign key to `tenants` was made a Citus-local table ('n') by its
    // CREATE; create_distributed_table takes it from there.
    if (done.get(table) === "h") continue;
    await client`SELECT create_distributed_table(${table}, ${DISTRIBUTION_COLUMN},
      colocate_with => ${anchor ?? "default"})`;
    anchor ??= table;
    changed.push(table);
  }
  return { kind: "distributed", changed };
}

/**
 * The tenant tables that are not hash-distributed by `tenant_id`; empty on a correct Citus
 * layout. What the tests and `db:migrate` check after the layout step.
 */
export async function undistributedTenantTables(client: postgres.Sql): Promise<string[]> {
  const distributed = await client<{ name: string }[]>`
    SELECT logicalrelid::regclass::text AS name FROM pg_dist_partition
    WHERE partmethod = 'h' AND column_to_column_name(logicalrelid, partkey) = ${DISTRIBUTION_COLUMN}`;
  const names = new Set(distributed.map((row) => row.name));
  return (await tenantTables(client)).filter((table) => !names.has(table));
}
