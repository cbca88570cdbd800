// Verify consumers/js/adamw.js against the language-agnostic vectors in adamw_ref/vectors/data.
//
//   node consumers/js/verify.mjs [DIR]
//
// Runs every test whose configuration this implementation supports, compares the parameters,
// m, v (and vMax) after each listed step bit for bit (NaN equals NaN; -0 differs from +0), prints
// one line per failure and finally "N passed, M failed, K skipped"; exits 1 on any failure.
import { readFileSync, readdirSync } from "node:fs";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { checkSupported, init, step, roundingFor } from "./adamw.js";

/** Python float.hex / "nan" / "inf" / "-inf" -> Number, exactly. */
export function fromHex(s) {
  if (s === "nan") return NaN;
  if (s === "inf") return Infinity;
  if (s === "-inf") return -Infinity;
  const m = /^(-?)0x([01])\.([0-9a-f]+)p([+-]\d+)$/.exec(s);
  if (!m) throw new Error(`not a float.hex string: ${JSON.stringify(s)}`);
  const frac = m[3];
  // 1 + 13 hex digits = at most 53 bits: the integer is exact in a double.
  let x = parseInt(m[2] + frac, 16);
  let e = parseInt(m[4], 10) - 4 * frac.length;
  // Scale by powers of two so that only the last (exact) multiplication can reach subnormals.
  while (e > 1023) { x *= 2 ** 1023; e -= 1023; }
  while (e < -1022) { x *= 2 ** -1022; e += 1022; }
  x *= 2 ** e;
  return m[1] === "-" ? -x : x;
}

const same = (a, b) => (a !== a && b !== b) || Object.is(a, b);
const decodeMap = (d) => Object.fromEntries(Object.entries(d).map(([k, v]) => [k, v.map(fromHex)]));

function compare(where, got, want, problems) {
  for (const [name, values] of Object.entries(want)) {
    const g = got?.[name];
    if (!g || g.length !== values.length) {
      problems.push(`${where}[${name}]: missing or wrong length`);
      continue;
    }
    values.forEach((w, i) => {
      if (!same(g[i], w)) problems.push(`${where}[${name}][${i}]: got ${g[i]} want ${w}`);
    });
  }
}

/** Run one test; returns a list of problems (empty = pass). */
export function runTest(test, config, dtype) {
  const R = roundingFor(dtype);
  let params = Object.fromEntries(Object.entries(decodeMap(test.params)).map(([k, v]) => [k, v.map(R)]));
  let state = init(params, config);
  const expected = new Map(test.expected.map((e) => [e.step, e]));
  const problems = [];
  test.grads.forEach((gs, idx) => {
    const grads = Object.fromEntries(
      Object.entries(gs).map(([k, v]) => [k, v === null ? null : v.map(fromHex)]),
    );
    ({ params, state } = step(params, grads, state, config, dtype));
    const e = expected.get(idx + 1);
    if (!e) return;
    const at = `step ${idx + 1}`;
    compare(`${at} params`, params, decodeMap(e.params), problems);
    compare(`${at} m`, state.m, decodeMap(e.m), problems);
    compare(`${at} v`, state.v, decodeMap(e.v), problems);
    if (e.vMax) compare(`${at} vMax`, state.vMax, decodeMap(e.vMax), problems);
    for (const [k, n] of Object.entries(e.paramSteps)) {
      if (state.paramSteps[k] !== n) problems.push(`${at} paramSteps[${k}]: got ${state.paramSteps[k]} want ${n}`);
    }
  });
  return problems;
}

export function verifyDir(dir, log = console.log) {
  let passed = 0, failed = 0, skipped = 0;
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  for (const file of files) {
    const doc = JSON.parse(readFileSync(join(dir, file), "utf8"));
    for (const group of doc.testGroups) {
      let reason = null;
      try {
        checkSupported(group.config);
        roundingFor(group.dtype);
      } catch (err) {
        reason = err.message;
      }
      for (const test of group.tests) {
        if (reason) {
          skipped++;
          log(`SKIP ${file} tcId ${test.tcId}: ${reason}`);
          continue;
        }
        const problems = runTest(test, group.config, group.dtype);
        if (problems.length === 0) passed++;
        else {
          failed++;
          log(`FAIL ${file} tcId ${test.tcId} [${test.flags.join(",")}]: ${problems.slice(0, 3).join("; ")}`);
        }
      }
    }
  }
  return { passed, failed, skipped, files: files.length };
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const here = dirname(fileURLToPath(import.meta.url));
  const dir = process.argv[2] ?? join(here, "..", "..", "adamw_ref", "vectors", "data");
  const r = verifyDir(dir);
  if (r.files === 0) {
    console.log(`no vector files in ${dir}`);
    process.exit(2);
  }
  console.log(`${r.passed} passed, ${r.failed} failed, ${r.skipped} skipped (${r.files} files)`);
  process.exit(r.failed > 0 ? 1 : 0);
}
