// peer.mjs — the backfill benchmark's peer: DuckDB computes the same point-in-time features
// as benchmarks/configs/bench_join_*.v1 over the same warehouse CSV files, in SQL, and writes
// one JSON object per left row (sorted by checkout_id).
//
//   node peer.mjs WAREHOUSE OUT.jsonl START_DS END_DS WINDOWS THREADS
//
// WINDOWS is a comma list like "1h,1d,7d,30d,life". The window rule is SPEC §4's:
// floor((q - w) / H) * H <= ts < q with H = 1d (w >= 12d), 1h (w >= 12h), else 5m; "life" is
// ts < q. Windowed features come from a range join bounded by the largest window; lifetime
// ones from running window functions over the union of events and left rows (left rows sort
// before events at equal ts, so an event at exactly q is excluded). COUNT and SUM of nothing
// are NULL, as in SPEC §4.
import { DuckDBInstance } from '@duckdb/node-api';

const [wh, out, startDs, endDs, winSpec, threads] = process.argv.slice(2);
if (!wh || !out || !startDs || !endDs || !winSpec) {
  console.error('usage: node peer.mjs WAREHOUSE OUT.jsonl START_DS END_DS WINDOWS [THREADS]');
  process.exit(2);
}
const MS = { m: 60000, h: 3600000, d: 86400000 };
const windows = winSpec.split(',').map((w) => {
  if (w === 'life') return { name: '', ms: 0 };
  const ms = parseInt(w, 10) * MS[w.slice(-1)];
  const hop = ms >= 12 * MS.d ? MS.d : ms >= 12 * MS.h ? MS.h : 5 * MS.m;
  return { name: w, ms, hop };
});
const timed = windows.filter((w) => w.ms > 0);
const lifetime = windows.some((w) => w.ms === 0);
const maxw = timed.reduce((a, w) => Math.max(a, w.ms), 0);
const maxhop = maxw >= 12 * MS.d ? MS.d : maxw >= 12 * MS.h ? MS.h : 5 * MS.m;

const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
await c.run(`SET threads = ${parseInt(threads || '2', 10)}`);
await c.run('SET preserve_insertion_order = false');
const t0 = Date.now();
// rn: SPEC §3 row order (txn_id is t<n> in the generator's row order), for LAST's tie rule:
// on equal ts the earlier row wins.
await c.run(`CREATE TABLE e AS SELECT user_id AS k, amount, ts, CAST(substr(txn_id, 2) AS BIGINT) AS rn FROM read_csv('${wh}/payments/card_txn/*/*.csv',
  header = true, columns = {'txn_id': 'VARCHAR', 'user_id': 'VARCHAR', 'merchant_id': 'VARCHAR',
  'amount': 'DOUBLE', 'currency': 'VARCHAR', 'mcc': 'BIGINT', 'is_online': 'BOOLEAN', 'ts': 'BIGINT'})`);
await c.run(`CREATE TABLE l AS SELECT checkout_id, user_id AS k, ts FROM read_csv('${wh}/payments/checkouts/*/*.csv',
  header = true, filename = true, columns = {'checkout_id': 'VARCHAR', 'user_id': 'VARCHAR',
  'merchant_id': 'VARCHAR', 'cart_value': 'DOUBLE', 'ts': 'BIGINT'})
  WHERE regexp_extract(filename, 'ds=([0-9-]+)', 1) BETWEEN '${startDs}' AND '${endDs}'`);

const cols = [];
const aggs = [];
for (const w of timed) {
  const start = `(l.ts - ${w.ms}) // ${w.hop} * ${w.hop}`;
  const f = `FILTER (WHERE e.ts >= ${start})`;
  aggs.push(`NULLIF(count(e.amount) ${f}, 0) AS amount_count_${w.name}`);
  aggs.push(`sum(e.amount) ${f} AS amount_sum_${w.name}`);
  aggs.push(`avg(e.amount) ${f} AS amount_average_${w.name}`);
  aggs.push(`min(e.amount) ${f} AS amount_min_${w.name}`);
  aggs.push(`max(e.amount) ${f} AS amount_max_${w.name}`);
  aggs.push(`arg_max(e.amount, {'t': e.ts, 'r': -e.rn}) FILTER (WHERE e.ts >= ${start} AND e.amount IS NOT NULL) AS amount_last_${w.name}`);
  for (const op of ['count', 'sum', 'average', 'min', 'max', 'last']) cols.push(`amount_${op}_${w.name}`);
}
if (timed.length) {
  await c.run(`CREATE TABLE win AS SELECT l.checkout_id, ${aggs.join(', ')}
    FROM l LEFT JOIN e ON e.k = l.k AND e.ts < l.ts AND e.ts >= (l.ts - ${maxw}) // ${maxhop} * ${maxhop}
    GROUP BY l.checkout_id`);
}
if (lifetime) {
  await c.run(`CREATE TABLE life AS SELECT checkout_id, NULLIF(c, 0) AS amount_count, s AS amount_sum,
      a AS amount_average, mn AS amount_min, mx AS amount_max, lv AS amount_last FROM (
    SELECT checkout_id, kind,
      count(amount) OVER w AS c, sum(amount) OVER w AS s, avg(amount) OVER w AS a,
      min(amount) OVER w AS mn, max(amount) OVER w AS mx, last_value(amount IGNORE NULLS) OVER w AS lv
    FROM (SELECT k, ts, 1 AS kind, rn, amount, NULL::VARCHAR AS checkout_id FROM e
          UNION ALL SELECT k, ts, 0 AS kind, 0, NULL::DOUBLE, checkout_id FROM l WHERE k IS NOT NULL)
    WINDOW w AS (PARTITION BY k ORDER BY ts, kind, rn DESC ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
    WHERE kind = 0`);
  for (const op of ['count', 'sum', 'average', 'min', 'max', 'last']) cols.push(`amount_${op}`);
}
const from = ['l'];
if (timed.length) from.push('LEFT JOIN win USING (checkout_id)');
if (lifetime) from.push('LEFT JOIN life USING (checkout_id)');
await c.run(`COPY (SELECT l.checkout_id, ${cols.join(', ')} FROM ${from.join(' ')} ORDER BY l.checkout_id)
  TO '${out}' (FORMAT JSON)`);
console.error(`duckdb peer: ${((Date.now() - t0) / 1000).toFixed(2)} s inside DuckDB`);
