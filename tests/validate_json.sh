#!/bin/sh
# validate_json.sh SCHEMA FILE...: checks each FILE against the JSON Schema SCHEMA with
# Debian's python3-jsonschema; prints the first error of a file that does not conform.
schema=$1
shift
exec /usr/bin/python3 - "$schema" "$@" <<'PY'
import json, sys
import jsonschema
import os, pathlib
schema_path = pathlib.Path(sys.argv[1]).resolve()
schema = json.load(open(schema_path))
jsonschema.Draft202012Validator.check_schema(schema)
# $refs to sibling files ("run-result.schema.json") are read from the schema's folder.
store = {}
for sibling in schema_path.parent.glob("*.schema.json"):
    document = json.load(open(sibling))
    store[document.get("$id", sibling.name)] = document
    store[sibling.name] = document
resolver = jsonschema.RefResolver(base_uri=schema.get("$id", schema_path.as_uri()), referrer=schema,
                                  store=store)
validator = jsonschema.Draft202012Validator(schema, resolver=resolver,
                                            format_checker=jsonschema.FormatChecker())
failed = False
for path in sys.argv[2:]:
    errors = sorted(validator.iter_errors(json.load(open(path))), key=lambda e: list(e.path))
    for error in errors[:1]:
        print(f"{path}: {'/'.join(map(str, error.path)) or '(top)'}: {error.message}")
        failed = True
    if not errors:
        print(f"{path}: valid")
sys.exit(1 if failed else 0)
PY
