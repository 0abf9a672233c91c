// Runs the DuckDB example of README.md ("Querying the Parquet output") over a
// local copy of the dev stack's bucket, so the documented SQL and the Parquet
// the worker writes cannot drift apart. `make smoke` runs it (devstack
// --duckdb-check) on the objects of its own run.
//
//   node deploy/devstack/readme_duckdb.mjs <copy of the bucket> [key]
//
// The SQL is taken from the README between the duckdb-setup and duckdb-query
// marker comments. The setup block (httpfs, CREATE SECRET) cannot run
// without the internet, so it is only parsed and bound: it must fail, if at
// all, for the missing httpfs extension alone. The query block runs with
// 's3://sessionflow/' replaced by the copy; its first statement must return
// rows whose `sessions` add up to every row of the pipeline's Parquet. With
// a key, that key's session must be among them (DuckDB reads the rows the
// worker wrote, strings and lists included).
// @duckdb/node-api comes from bench/batch (cd bench/batch && npm ci).
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const fail = (msg) => {
  console.error(`readme_duckdb: ${msg}`);
  process.exit(1);
};

const [copy, key] = process.argv.slice(2);
if (!copy) fail('usage: node deploy/devstack/readme_duckdb.mjs <copy of the bucket> [key]');

let DuckDBInstance;
try {
  ({ DuckDBInstance } = createRequire(path.join(root, 'bench/batch/package.json'))('@duckdb/node-api'));
} catch (e) {
  fail(`@duckdb/node-api is not installed: run (cd bench/batch && npm ci) (${e.message})`);
}

const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
const block = (name) => {
  const m = readme.match(new RegExp(`<!-- ${name}:begin -->([\\s\\S]*?)<!-- ${name}:end -->`));
  const sql = m && m[1].match(/```sql\n([\s\S]*?)```/);
  if (!sql) fail(`README.md has no \`\`\`sql block between <!-- ${name}:begin --> and <!-- ${name}:end -->`);
  return sql[1];
};
const setup = block('duckdb-setup');
const bucketURL = 's3://sessionflow/';
const query = block('duckdb-query');
if (!query.includes(bucketURL)) fail(`the README's query does not read ${bucketURL}`);
const local = query.replaceAll(bucketURL, `${copy.replace(/\/+$/, '')}/`);

// No downloads: an extension DuckDB would fetch is reported, not installed.
const db = await DuckDBInstance.create(':memory:', {
  autoinstall_known_extensions: 'false',
  autoload_known_extensions: 'false',
});
const con = await db.connect();

const statements = async (sql, what) => {
  try {
    return await con.extractStatements(sql);
  } catch (e) {
    fail(`the README's ${what} does not parse: ${e.message}`);
  }
};

const setupStmts = await statements(setup, 'setup');
for (let i = 0; i < setupStmts.count; i++) {
  try {
    await setupStmts.prepare(i); // binds, does not run: INSTALL would download
  } catch (e) {
    if (!/httpfs/.test(e.message)) fail(`setup statement ${i + 1}: ${e.message}`);
  }
}
console.log(`readme_duckdb: the setup's ${setupStmts.count} statements parse (not run: httpfs needs the internet)`);

const queryStmts = await statements(local, 'query');
const results = [];
for (let i = 0; i < queryStmts.count; i++) {
  let reader;
  try {
    reader = await (await queryStmts.prepare(i)).runAndReadAll();
  } catch (e) {
    fail(`query statement ${i + 1}: ${e.message}`);
  }
  const rows = reader.getRowObjectsJson();
  results.push(rows);
  console.log(`readme_duckdb: query statement ${i + 1}, ${rows.length} rows:`);
  console.table(rows.slice(0, 20));
}

const [summary] = results;
if (!summary || summary.length === 0) fail('the first query statement returned no rows');
for (const col of ['session_date', 'close_reason', 'sessions']) {
  if (!(col in summary[0])) fail(`the first query statement has no column ${col}`);
}
const glob = local.match(/read_parquet\('([^']+)'/)[1];
const all = await con.runAndReadAll(`SELECT count(*)::INTEGER AS n FROM read_parquet('${glob}')`);
const n = all.getRowObjectsJson()[0].n;
const total = summary.reduce((sum, r) => sum + Number(r.sessions), 0);
if (total !== n) fail(`the summary counts ${total} sessions, the files under ${glob} hold ${n}`);
if (key) {
  const r = await con.runAndReadAll(
    `SELECT count(*)::INTEGER AS n FROM read_parquet('${glob}', hive_partitioning = true) WHERE key = $1`, [key]);
  if (r.getRowObjectsJson()[0].n !== 1) fail(`key ${key}: want its one session in the Parquet, DuckDB finds ${r.getRowObjectsJson()[0].n}`);
}
console.log(`readme_duckdb: ok, the README's query covers all ${n} sessions${key ? ` and finds ${key}` : ''}`);
