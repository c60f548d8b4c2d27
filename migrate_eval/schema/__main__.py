"""``python -m migrate_eval.schema``: print the JSON Schema of results.json."""

import sys

from migrate_eval.schema import results_schema_text

sys.stdout.write(results_schema_text())
