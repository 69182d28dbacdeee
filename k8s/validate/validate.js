#!/usr/bin/env node
// Validate Kubernetes objects (a JSON list, from a file or stdin) against the OpenAPI schemas of
// the kubernetes-models package (the Kubernetes API's own definitions, compiled to validators),
// offline. Prints one JSON report: [{kind, name, errors: [...], unknown: [...]}]; exit 1 when any
// object has an error or a field the schema does not know.
//
//   node k8s/validate/validate.js rendered.json      (after k8s/validate/install)
//
// The schemas check types, required fields, enums and formats. They do not reject unknown fields
// (the API server prunes or refuses them depending on its mode), so a misspelt field would pass:
// each object is therefore validated through a Proxy that records every property the validator
// reads; a property it never reads is not in the schema and is reported under `unknown`.
"use strict";

const fs = require("fs");
const path = require("path");

const modelsDir = path.dirname(require.resolve("kubernetes-models/package.json"));

const GROUPS = {
  "": "Core",
  apps: "Apps",
  batch: "Batch",
  policy: "Policy",
  "networking.k8s.io": "Networking",
  "rbac.authorization.k8s.io": "Rbac",
  autoscaling: "Autoscaling",
};

function schemaFor(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const g = GROUPS[group];
  if (!g) return null;
  const v = version.charAt(0).toUpperCase() + version.slice(1);
  const file = path.join(modelsDir, "_schemas", `IoK8sApi${g}${v}${kind}.js`);
  if (!fs.existsSync(file)) return null;
  return require(file).validate;
}

// A deep proxy over `value` that records the paths the validator reads.
function watched(value, at, seen) {
  if (value === null || typeof value !== "object") return value;
  return new Proxy(value, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver);
      if (typeof prop !== "string") return v;
      const p = Array.isArray(target) ? `${at}/${prop}` : `${at}/${prop}`;
      if (Object.prototype.hasOwnProperty.call(target, prop)) seen.add(p);
      return watched(v, p, seen);
    },
  });
}

// Every path of a plain object that the validator never read.
function unread(value, at, seen, out) {
  if (value === null || typeof value !== "object") return;
  for (const key of Object.keys(value)) {
    const p = `${at}/${key}`;
    if (!seen.has(p)) {
      out.push(p);
      continue;
    }
    unread(value[key], p, seen, out);
  }
}

function main() {
  const input = process.argv[2] ? fs.readFileSync(process.argv[2], "utf8") : fs.readFileSync(0, "utf8");
  const objects = JSON.parse(input);
  const report = [];
  let bad = 0;
  for (const obj of objects) {
    const entry = { kind: obj.kind, name: (obj.metadata || {}).name, errors: [], unknown: [] };
    const validate = schemaFor(obj.apiVersion || "", obj.kind || "");
    if (!validate) {
      entry.errors.push(`no schema for ${obj.apiVersion} ${obj.kind}`);
    } else {
      const seen = new Set();
      const ok = validate(watched(obj, "", seen));
      if (!ok) {
        for (const e of validate.errors || []) {
          entry.errors.push(`${e.instancePath || "/"} ${e.message || e.keyword}${e.params ? " " + JSON.stringify(e.params) : ""}`);
        }
      }
      unread(obj, "", seen, entry.unknown);
    }
    if (entry.errors.length || entry.unknown.length) bad++;
    report.push(entry);
  }
  process.stdout.write(JSON.stringify({ kubernetesModels: require("kubernetes-models/package.json").version, objects: report }, null, 1) + "\n");
  process.exit(bad ? 1 : 0);
}

main();
