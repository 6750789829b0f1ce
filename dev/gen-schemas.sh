#!/usr/bin/env bash
# dev/gen-schemas.sh: regenerate src/manifest/istio-schemas.json, the schema catalogue meshloop
# embeds for offline validation, from the Istio CRDs the local cluster installs
# (`dev/localcluster crds`). Run it after changing the pinned Istio version; the test
# `the_embedded_schemas_are_those_of_the_installed_crds` (tests/schema.rs) fails until then.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

crds=$(dev/localcluster crds)
# The module path and file, without this machine's module cache directory.
source=${crds#"$(go env GOMODCACHE)/"}
cargo run --quiet --example gen_schemas -- "$crds" "$source" >src/manifest/istio-schemas.json.new
mv src/manifest/istio-schemas.json.new src/manifest/istio-schemas.json
echo "src/manifest/istio-schemas.json: from $source"
