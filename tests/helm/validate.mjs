// Validates rendered Kubernetes objects against Kubernetes' own schemas:
// the models of the npm packages kubernetes-models (core, apps, policy,
// networking) and @kubernetes-models/prometheus-operator (ServiceMonitor).
//
//   node validate.mjs NODE_MODULES_DIR OBJECTS.json
//
// OBJECTS.json is the renderer's --out-json: [{source, object}, ...].
// Each object must (1) pass its model's validate() (types, required
// fields, enums, formats) and (2) carry no field its schema does not
// know. validate() does not check (2), so the validator runs a second
// time over a Proxy of the object that records which properties the
// schema code reads: a property never read, in an object whose keys the
// schema never enumerated (a map such as labels is enumerated), is
// unknown. Prints one line per object; exits 1 on any problem.
import { readFileSync } from "node:fs";
import path from "node:path";

const [nodeModules, objectsFile] = process.argv.slice(2);
if (!nodeModules || !objectsFile) {
  console.error("usage: node validate.mjs NODE_MODULES_DIR OBJECTS.json");
  process.exit(2);
}

function modelModule(apiVersion) {
  if (apiVersion === "monitoring.coreos.com/v1")
    return "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js";
  if (!/^([a-z0-9.]+\/)?v[0-9a-z]+$/.test(apiVersion)) return null;
  return `kubernetes-models/${apiVersion}/index.js`;
}

// Wraps o so that reads and key enumerations are recorded per JSON path.
function tracker() {
  const read = new Map();
  const enumerated = new Set();
  const wrap = (o, p) => {
    if (o === null || typeof o !== "object") return o;
    if (!read.has(p)) read.set(p, new Set());
    return new Proxy(o, {
      get(t, k, r) {
        const v = Reflect.get(t, k, r);
        if (typeof k !== "string" || !Object.prototype.hasOwnProperty.call(t, k)) return v;
        read.get(p).add(k);
        return wrap(v, `${p}/${k}`);
      },
      has(t, k) {
        if (typeof k === "string") read.get(p).add(k);
        return Reflect.has(t, k);
      },
      ownKeys(t) {
        enumerated.add(p);
        return Reflect.ownKeys(t);
      },
    });
  };
  const unknown = (o, p, out) => {
    if (o === null || typeof o !== "object") return out;
    for (const k of Object.keys(o)) {
      const kp = `${p}/${k}`;
      if (!Array.isArray(o) && !enumerated.has(p) && !(read.get(p) || new Set()).has(k))
        out.push(kp);
      unknown(o[k], kp, out);
    }
    return out;
  };
  return { wrap, unknown };
}

const entries = JSON.parse(readFileSync(objectsFile, "utf8"));
if (!Array.isArray(entries) || entries.length === 0) {
  console.error(`${objectsFile}: no objects`);
  process.exit(1);
}
let bad = 0;
for (const { source, object } of entries) {
  const id = `${object.kind}/${object.metadata && object.metadata.name} (${source})`;
  const mod = modelModule(object.apiVersion);
  let Model;
  try {
    Model = mod && (await import(path.join(nodeModules, mod)))[object.kind];
  } catch (e) {
    Model = null;
  }
  if (!Model) {
    console.log(`FAIL ${id}: no model for ${object.apiVersion} ${object.kind}`);
    bad++;
    continue;
  }
  try {
    new Model(object).validate();
  } catch (e) {
    console.log(`FAIL ${id}: ${e.message}`);
    bad++;
    continue;
  }
  const t = tracker();
  Model.prototype.validate.call(t.wrap(object, ""));
  const unknown = t.unknown(object, "", []);
  if (unknown.length > 0) {
    console.log(`FAIL ${id}: unknown field(s) ${unknown.join(", ")}`);
    bad++;
    continue;
  }
  console.log(`ok ${id}`);
}
process.exit(bad > 0 ? 1 : 0);
