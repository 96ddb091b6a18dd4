// Validates Kubernetes manifests offline against the API schemas of the
// kubernetes-models package (npm, installed by `make test-npm` into
// tests/npm). stdin: a JSON array of manifests. Prints one line per
// invalid manifest; exits 1 when one is, 2 when a kind is unknown here.
'use strict';
const path = require('path');
const root = path.join(__dirname, '..', 'npm', 'node_modules', 'kubernetes-models');
const docs = JSON.parse(require('fs').readFileSync(0, 'utf8'));
let bad = 0;
for (const doc of docs) {
  const [group, version] = doc.apiVersion.includes('/') ? doc.apiVersion.split('/') : ['', doc.apiVersion];
  let Model;
  try {
    Model = require(path.join(root, group || '', version, doc.kind))[doc.kind];
  } catch (e) {
    console.log(`${doc.apiVersion} ${doc.kind}: no schema here (${e.message})`);
    process.exit(2);
  }
  try {
    new Model(doc).validate();
    console.log(`valid ${doc.kind} ${doc.metadata && doc.metadata.name}`);
  } catch (e) {
    bad++;
    console.log(`invalid ${doc.kind} ${doc.metadata && doc.metadata.name}: ${e.message}`);
  }
}
process.exit(bad ? 1 : 0);
