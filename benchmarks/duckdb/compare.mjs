// compare.mjs — checks that tessera's backfill output and the DuckDB peer agree on every
// shared feature: equal counts, doubles within 1e-9 relative (SPEC §4 "exact").
//   node compare.mjs TESSERA_OUTPUT_DIR PEER.jsonl FEATURE_PREFIX
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';

const [ours, peer, prefix] = process.argv.slice(2);
async function* lines(file) {
  const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
  for await (const line of rl) if (line.trim()) yield JSON.parse(line);
}
const want = new Map();
for await (const r of lines(peer)) want.set(r.checkout_id, r);
let rows = 0, values = 0, mismatches = 0;
const shown = [];
function close(a, b) {
  if (a === null || b === null || a === undefined || b === undefined) return (a ?? null) === (b ?? null);
  if (typeof a === 'number' && typeof b === 'number') {
    const d = Math.abs(a - b), s = Math.max(Math.abs(a), Math.abs(b));
    return s < 1 ? d <= 1e-9 : d <= 1e-9 * s;
  }
  return a === b;
}
for (const dir of fs.readdirSync(ours).filter((d) => d.startsWith('ds=')).sort()) {
  for (const f of fs.readdirSync(path.join(ours, dir)).filter((f) => f.endsWith('.jsonl'))) {
    for await (const r of lines(path.join(ours, dir, f))) {
      rows++;
      const w = want.get(r.checkout_id);
      if (!w) { mismatches++; if (shown.length < 5) shown.push(`${r.checkout_id}: missing from the peer`); continue; }
      for (const [k, v] of Object.entries(w)) {
        if (k === 'checkout_id') continue;
        values++;
        const got = r[prefix + k];
        if (!close(got, v)) {
          mismatches++;
          if (shown.length < 5) shown.push(`${r.checkout_id} ${k}: tessera ${got}, duckdb ${v}`);
        }
      }
    }
  }
}
if (rows !== want.size) { mismatches++; shown.push(`row count: tessera ${rows}, duckdb ${want.size}`); }
console.log(`compare: ${rows} rows, ${values} values, ${mismatches} mismatches`);
for (const s of shown) console.log('  ' + s);
process.exit(mismatches ? 1 : 0);
