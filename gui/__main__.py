"""python -m gui: the desktop window is not built yet (issue 4); says so and exits 2."""

import sys


def main(argv: list[str] | None = None) -> int:
    print("error: the desktop GUI is not built yet; run 'python -m realtime --source FILE --out FILE.jsonl'",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
