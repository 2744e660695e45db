"""``python -m rctc.ops``: print the operator table; ``--json`` as JSON; ``--readme FILE`` rewrites
FILE's generated block of supported ops (the README's).

Needs: rctc.ops. Leaves: stdout (or the rewritten file, written atomically).
"""

from __future__ import annotations

import json
import sys

from rctc.ops import format_table, operator_table
from rctc.ops.table import rewrite_readme


def main(argv: list[str]) -> int:
    if argv[:1] == ["--readme"] and len(argv) == 2:
        print(f"{argv[1]}: {'rewritten' if rewrite_readme(argv[1]) else 'up to date'}")
    elif argv == ["--json"]:
        print(json.dumps({"ops": operator_table()}, indent=1))
    elif not argv:
        print(format_table())
    else:
        print("usage: python -m rctc.ops [--json | --readme FILE]", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
