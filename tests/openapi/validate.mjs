// validate.mjs: checks docs/openapi.yaml and real chsmd answers against it.
//
//   node validate.mjs OPENAPI.yaml RECORD_DIR
//
// 1. The document is a valid OpenAPI 3.1 document
//    (@seriousme/openapi-schema-validator).
// 2. Every exchange chsm-conform recorded (--record: NNNN.json with method,
//    path, status, contentType, body) is answered as the document says: its
//    path and method are documented (else it must be 1004/404 or 1005/405),
//    its status is listed for the operation, and its body validates against
//    that response's schema (ajv, JSON Schema 2020-12, with formats).
//    A request body answered 2xx validates against the operation's
//    requestBody schema.
// 3. Every callback body recorded (cb-NNNN.json) validates against the
//    taskCallback webhook's schema.
// 4. Every path and method of the document was exercised at least once.
// Prints one line per problem and "N passed, M failed"; exits 1 on any.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import YAML from "yaml";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";
import { Validator } from "@seriousme/openapi-schema-validator";

const [docPath, recordDir] = process.argv.slice(2);
if (!docPath || !recordDir) {
  console.error("usage: node validate.mjs OPENAPI.yaml RECORD_DIR");
  process.exit(2);
}
let passed = 0, failed = 0;
const ok = () => { passed++; };
const fail = (msg) => { failed++; console.log(`not ok - ${msg}`); };

const text = readFileSync(docPath, "utf8");
const doc = YAML.parse(text, { maxAliasCount: -1 });

// 1. the document itself
const validator = new Validator();
// The validator resolves $refs in place: give it a copy without YAML aliases.
const res = await validator.validate(JSON.parse(JSON.stringify(doc)));
if (res.valid) { ok(); console.log("ok - docs/openapi.yaml is a valid OpenAPI 3.1 document"); }
else fail(`the document is not valid OpenAPI 3.1: ${JSON.stringify(res.errors).slice(0, 2000)}`);
if (doc.openapi !== "3.1.0") fail(`openapi is ${doc.openapi}, not 3.1.0`); else ok();

// 2. real answers
const ajv = new Ajv2020({ strict: false, allErrors: true, validateSchema: false });
addFormats(ajv);
ajv.addSchema(doc, "openapi.json");
const esc = (s) => s.replace(/~/g, "~0").replace(/\//g, "~1");
const compiled = new Map();
function validatorAt(pointer) {
  if (!compiled.has(pointer)) compiled.set(pointer, ajv.compile({ $ref: `openapi.json#${pointer}` }));
  return compiled.get(pointer);
}
function resolve(obj, pointer) {
  // follows an OpenAPI Reference Object; returns [object, its pointer]
  while (obj && obj.$ref && obj.$ref.startsWith("#/") && !obj.schema && !obj.content) {
    pointer = obj.$ref.slice(1);
    obj = pointer.split("/").slice(1).reduce((o, k) => o[k.replace(/~1/g, "/").replace(/~0/g, "~")], doc);
  }
  return [obj, pointer];
}
const METHODS = ["get", "put", "post", "delete"];
const templates = Object.keys(doc.paths).map((p) => ({
  path: p,
  literal: !p.includes("{"),
  re: new RegExp("^" + p.replace(/\{[^}]+\}/g, "[^/]+") + "$"),
}));
templates.sort((a, b) => (b.literal - a.literal));
const seen = new Set();
const seenOk = new Set();

function checkBody(where, rec, responsePointer) {
  let [response, rp] = resolve(
    responsePointer.split("/").slice(1).reduce((o, k) => o[k.replace(/~1/g, "/").replace(/~0/g, "~")], doc),
    responsePointer);
  const ctype = (rec.contentType || "").split(";")[0].trim();
  const content = response.content || {};
  if (!content[ctype]) { fail(`${where}: content type ${ctype} not documented (${Object.keys(content)})`); return; }
  if (ctype !== "application/json") { ok(); return; }
  let body;
  try { body = JSON.parse(rec.body); } catch { fail(`${where}: body is not JSON`); return; }
  const v = validatorAt(`${rp}/content/${esc(ctype)}/schema`);
  if (v(body)) ok();
  else fail(`${where}: ${JSON.stringify(v.errors.slice(0, 3))} body ${rec.body.slice(0, 400)}`);
}

const files = readdirSync(recordDir).filter((f) => f.endsWith(".json")).sort();
let exchanges = 0, callbacks = 0;
for (const f of files) {
  const rec = JSON.parse(readFileSync(join(recordDir, f), "utf8"));
  if (f.startsWith("cb-")) {
    callbacks++;
    let body;
    try { body = JSON.parse(rec.body); } catch { fail(`${f}: callback body not JSON`); continue; }
    const v = validatorAt("/webhooks/taskCallback/post/requestBody/content/application~1json/schema");
    if (v(body)) ok(); else fail(`${f} callback: ${JSON.stringify(v.errors.slice(0, 3))}`);
    continue;
  }
  exchanges++;
  const where = `${f} ${rec.method} ${rec.path} -> ${rec.status}`;
  const t = templates.find((t) => t.re.test(rec.path));
  if (!t) {
    if (rec.status !== 404) { fail(`${where}: undocumented path answered ${rec.status}, not 404`); continue; }
    checkBody(where, rec, "/components/responses/E404");
    continue;
  }
  const m = rec.method.toLowerCase();
  const op = doc.paths[t.path][m];
  if (!op) {
    if (rec.status !== 405) { fail(`${where}: undocumented method answered ${rec.status}, not 405`); continue; }
    checkBody(where, rec, "/components/responses/E405");
    continue;
  }
  seen.add(`${m} ${t.path}`);
  const status = String(rec.status);
  if (!op.responses[status]) { fail(`${where}: status ${status} not documented for ${m} ${t.path}`); continue; }
  if (status.startsWith("2")) {
    seenOk.add(`${m} ${t.path}`);
    // an accepted request body is one the document accepts
    const [rb, rbp] = op.requestBody ? resolve(op.requestBody, `/paths/${esc(t.path)}/${m}/requestBody`) : [null, null];
    if (rb && rec.requestBody !== undefined) {
      const v = validatorAt(`${rbp}/content/application~1json/schema`);
      if (v(JSON.parse(rec.requestBody))) ok();
      else fail(`${where}: accepted request body not valid for the document: ${JSON.stringify(v.errors.slice(0, 3))} ${rec.requestBody.slice(0, 300)}`);
    }
  }
  checkBody(where, rec, `/paths/${esc(t.path)}/${m}/responses/${status}`);
}
if (exchanges > 100) ok(); else fail(`only ${exchanges} recorded exchanges`);
if (callbacks > 0) ok(); else fail("no callback recorded");

// 4. coverage
for (const p of Object.keys(doc.paths))
  for (const m of METHODS)
    if (doc.paths[p][m]) {
      if (seen.has(`${m} ${p}`)) ok(); else fail(`${m.toUpperCase()} ${p} was never exercised`);
    }
const noSuccess = [];
for (const p of Object.keys(doc.paths))
  for (const m of METHODS)
    if (doc.paths[p][m] && !seenOk.has(`${m} ${p}`)) noSuccess.push(`${m.toUpperCase()} ${p}`);
console.log(`# ${exchanges} exchanges, ${callbacks} callbacks; operations seen only with errors: ${noSuccess.join(", ") || "none"}`);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
