// Sessionizes a clickstream JSON-lines file with DuckDB's SQL window
// functions, the way users do it today: a new session after more than
// GAP_MS of inactivity. Prints one JSON line: events, sessions, seconds.
import { DuckDBInstance } from '@duckdb/node-api';

const [file, gapMs = '1800000'] = process.argv.slice(2);
const started = performance.now();
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
const reader = await con.runAndReadAll(`
  WITH e AS (
    SELECT uuid, CAST(event_timestamp AS BIGINT) AS t
    FROM read_json('${file}', format = 'newline_delimited',
      columns = {uuid: 'VARCHAR', event_timestamp: 'VARCHAR', page_name: 'VARCHAR', event_id: 'VARCHAR'})
  ), g AS (
    SELECT uuid, t,
      CASE WHEN t - lag(t) OVER (PARTITION BY uuid ORDER BY t) > ${gapMs} THEN 1 ELSE 0 END AS starts
    FROM e
  ), s AS (
    SELECT uuid, t, sum(starts) OVER (PARTITION BY uuid ORDER BY t ROWS UNBOUNDED PRECEDING) AS sid FROM g
  ), sessions AS (
    SELECT uuid, sid, min(t) AS session_start, max(t) AS session_end, count(*) AS events FROM s GROUP BY uuid, sid
  )
  SELECT count(*) AS sessions, sum(events) AS events FROM sessions`);
const [row] = reader.getRowObjects();
const seconds = (performance.now() - started) / 1000;
console.log(JSON.stringify({ tool: 'duckdb', events: Number(row.events), sessions: Number(row.sessions), seconds }));
