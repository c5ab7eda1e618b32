"""``python -m minires.exercises start DIR`` / ``check DIR [EXERCISE ...]``."""
import argparse
import sys

from .grader import grade_directory, summary
from .sheet import SheetExistsError, start


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minires.exercises",
                                     description="Gradient-check exercises: write backward passes, get them graded.")
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="write the exercise sheet into DIR")
    start_parser.add_argument("directory", metavar="DIR")
    start_parser.add_argument("--force", action="store_true", help="overwrite an existing sheet")
    check_parser = commands.add_parser("check", help="grade the sheet in DIR (exit code 0 when all pass)")
    check_parser.add_argument("directory", metavar="DIR")
    check_parser.add_argument("exercises", nargs="*", metavar="EXERCISE",
                              help="numbers or names of the exercises to grade (default: all)")
    args = parser.parse_args(argv)

    if args.command == "start":
        try:
            paths = start(args.directory, force=args.force)
        except SheetExistsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {len(paths)} files into {args.directory}: " + ", ".join(p.name for p in paths))
        print(f"read {args.directory}/README.md, then: python -m minires.exercises check {args.directory}")
        return 0

    try:
        results = grade_directory(args.directory, args.exercises)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for result in results:
        print(result, end="\n\n")
    print(summary(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
