#!/bin/sh
# The schemas are well-formed JSON Schemas, every canned scenario conforms to its schema,
# and the validator does refuse what does not.
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
v=$root/tests/validate_json.sh
"$v" "$root/schemas/scenario.schema.json" "$root"/scenarios/*.json > /dev/null
for schema in run-result test-result; do
  /usr/bin/python3 -c "import json, jsonschema, sys; jsonschema.Draft202012Validator.check_schema(json.load(open(sys.argv[1])))" \
    "$root/schemas/$schema.schema.json"
done
bad=$(mktemp -d)
trap 'rm -rf "$bad"' EXIT
printf '{"name": "x", "workers": [{"name": "w", "work": "spinn"}]}\n' > "$bad/bad-work.json"
printf '{"name": "x", "workers": [], "colour": "red"}\n' > "$bad/bad-field.json"
for file in "$bad"/*.json; do
  if "$v" "$root/schemas/scenario.schema.json" "$file" > /dev/null; then
    echo "the scenario schema took $file"; exit 1
  fi
done
echo "schemas ok"
