"""``python -m minires.exercises start DIR`` / ``check [FOLDER] [EXERCISE ...]``.

``check``'s rule: a first argument that is an existing folder is the sheet; anything else is an
exercise, and the sheet is the current folder. So ``check my_exercises 4`` from outside the sheet
and ``check 4`` from inside it grade the same file.
"""
import argparse
import sys
from pathlib import Path

from .grader import grade_directory, summary
from .sheet import SheetExistsError, start


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m minires.exercises",
                                     description="Gradient-check exercises: write backward passes, get them graded.")
    commands = parser.add_subparsers(dest="command", required=True)
    start_parser = commands.add_parser("start", help="write the exercise sheet into DIR")
    start_parser.add_argument("directory", metavar="DIR")
    start_parser.add_argument("--force", action="store_true", help="overwrite an existing sheet")
    check_parser = commands.add_parser(
        "check", help="grade the sheet (exit code 0 when all pass)",
        description="Grade the sheet. A first argument that is not an existing folder is an exercise, "
                    "and the sheet is the current folder: 'check 4' works from inside the sheet.")
    check_parser.add_argument("folder", nargs="?", metavar="FOLDER",
                              help="the folder of the sheet (default: the current folder)")
    check_parser.add_argument("exercises", nargs="*", metavar="EXERCISE",
                              help="numbers or names of the exercises to grade (default: all)")
    args = parser.parse_args(argv)
    args.folder_taken_as_exercise = args.command == "check" and args.folder is not None and not Path(args.folder).is_dir()
    if args.folder_taken_as_exercise:
        args.exercises, args.folder = [args.folder, *args.exercises], None
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.command == "start":
        try:
            paths = start(args.directory, force=args.force)
        except SheetExistsError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"wrote {len(paths)} files into {args.directory}: " + ", ".join(p.name for p in paths))
        print(f"read {args.directory}/README.md, then: python -m minires.exercises check {args.directory}")
        return 0

    folder = args.folder or "."
    try:
        results = grade_directory(folder, args.exercises)
    except ValueError as error:
        rule = (f" ({args.exercises[0]!r} is not an existing folder, so it counts as an exercise and the "
                f"sheet is the current folder, {Path.cwd()})") if args.folder_taken_as_exercise else ""
        print(f"error: {error}{rule}", file=sys.stderr)
        return 2
    for result in results:
        print(result, end="\n\n")
    print(summary(results))
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
