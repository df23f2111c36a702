import postgres from "postgres";
import { afterAll, describe, expect, inject, it } from "vitest";

/**
 * The postgres.js 3.4.9 defects this project patches (patches/postgres+3.4.9.patch), each
 * reproduced on the real driver and a real server. Without the patch the first test times out,
 * the second is handed a dead connection or waits forever, the third ends the worker with
 * an uncaught TypeError, and the fourth sees begin() resolve for a transaction that was rolled
 * back.
 */
describe("postgres.js as patched", () => {
  const url = inject("databaseUrl");
  const pools: postgres.Sql[] = [];
  const open = (options: postgres.Options<Record<string, never>>) => {
    const pool = postgres(url, { onnotice: () => {}, ...options });
    pools.push(pool);
    return pool;
  };
  afterAll(() => Promise.all(pools.map((pool) => pool.end({ timeout: 1 }))));

  const within = <T>(promise: Promise<T>, ms: number) =>
    Promise.race([
      promise,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error(`not settled in ${ms} ms`)), ms),
      ),
    ]);

  it("reserve() settles when the connection it waited for closes (idle timeout, restart)", async () => {
    // The cleanup job's stall: a reserve() queued while the pool's connections are busy or
    // closing was taken off the queue by the close handler, reconnected for, and never settled.
    const pool = open({ max: 1 });
    const admin = open({ max: 1 });
    const [busy] = await pool<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
    const sleeping = pool`SELECT pg_sleep(5)`.catch((error: { code?: string }) => error.code);
    await new Promise((resolve) => setTimeout(resolve, 100));
    const reserving = pool.reserve(); // queued: the only connection is busy
    await admin`SELECT pg_terminate_backend(${busy?.pid ?? 0}::int)`;
    expect(await within(sleeping, 5000)).toMatch(/57P01|CONNECTION_/);
    const reserved = await within(reserving, 5000);
    const [row] = await reserved<{ ok: number }[]>`SELECT 1 AS ok`;
    expect(row?.ok).toBe(1);
    reserved.release();
    const [after] = await within(pool<{ ok: number }[]>`SELECT 2 AS ok`, 5000);
    expect(after?.ok).toBe(2);
  });

  it("a reserved connection that died is not handed out again after release()", async () => {
    // The cleanup job after a database restart: its lock connection died while reserved, and
    // release() put the dead connection back in the open queue, so every later run failed.
    // Whether the socket reports a reset or a clean close first varies, and a query sent
    // between the two used to wait forever: repeated so that every order occurs.
    const admin = open({ max: 1 });
    for (let attempt = 0; attempt < 50; attempt++) {
      const pool = open({ max: 1 });
      const reserved = await within(pool.reserve(), 5000);
      const [me] = await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
      await admin`SELECT pg_terminate_backend(${me?.pid ?? 0}::int)`;
      await expect(within(reserved`SELECT 1`, 5000)).rejects.toMatchObject({
        code: expect.any(String),
      });
      reserved.release();
      for (let round = 0; round < 2; round++) {
        const again = await within(pool.reserve(), 5000);
        const [row] = await within(again<{ n: number }[]>`SELECT ${round}::int AS n`, 5000);
        expect(row?.n).toBe(round);
        again.release();
      }
      await pool.end({ timeout: 1 });
    }
  });

  it("a transaction whose connection is killed rejects, and the process lives on", async () => {
    const pool = open({ max: 2 });
    const admin = open({ max: 1 });
    const uncaught: unknown[] = [];
    const onUncaught = (error: unknown) => uncaught.push(error);
    process.on("uncaughtException", onUncaught);
    try {
      const outcome = pool
        .begin(async (tx) => {
          const [me] = await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`;
          await admin`SELECT pg_terminate_backend(${me?.pid ?? 0}::int)`;
          await tx`SELECT pg_sleep(0.2)`;
        })
        .then(
          () => "committed",
          (error: { code?: string }) => error.code ?? "error",
        );
      // begin's own rollback after the close is what used to throw from a setImmediate.
      expect(await within(outcome, 5000)).toMatch(/CONNECTION_|57P01/);
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(uncaught).toEqual([]);
      const [row] = await within(pool<{ ok: number }[]>`SELECT 1 AS ok`, 5000);
      expect(row?.ok).toBe(1);
    } finally {
      process.off("uncaughtException", onUncaught);
    }
  });

  it("begin() rejects with the first failure when a statement sent without waiting aborted the transaction", async () => {
    // PostgreSQL answers the COMMIT of an aborted transaction with ROLLBACK, not an error;
    // unpatched, begin() then resolved as if everything had been committed.
    const pool = open({ max: 1, prepare: true });
    const table = `driver_rollback_${process.pid}_${Date.now()}`;
    await pool.unsafe(`CREATE TABLE ${table} (n int PRIMARY KEY)`);
    try {
      const outcome = pool
        .begin(async (sql) => {
          await sql.unsafe(`INSERT INTO ${table} VALUES (1)`);
          sql.unsafe(`INSERT INTO ${table} VALUES (2)`).catch(() => {});
          sql.unsafe(`INSERT INTO ${table} VALUES (1)`).catch(() => {}); // duplicate key
          return "returned";
        })
        .then(
          (value) => ({ value }),
          (error: { code?: string }) => ({ code: error.code }),
        );
      expect(await within(outcome, 5000)).toEqual({ code: "23505" });
      const rows = await pool.unsafe(`SELECT n FROM ${table}`);
      expect(rows).toHaveLength(0);
      // The connection is fine afterwards, and a transaction that commits still resolves.
      expect(
        await pool.begin(async (sql) => sql.unsafe(`INSERT INTO ${table} VALUES (3)`)),
      ).toHaveLength(0);
      expect(await pool.unsafe(`SELECT n FROM ${table}`)).toEqual([{ n: 3 }]);
    } finally {
      await pool.unsafe(`DROP TABLE ${table}`);
    }
  });
});
