import argparse
import logging

from pipeline import cli, params
from pipeline.deploy import __doc__ as usage
from pipeline.deploy import commands, teardown, tune


def main() -> None:
    parser = argparse.ArgumentParser(description=usage, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="deploy", choices=["deploy", "rollback", "destroy", "tune"])
    parser.add_argument("--yes", action="store_true", help="destroy without asking")
    parser.add_argument(
        "--force",
        action="store_true",
        help="deploy: a variant less accurate than the live one, or a rejected version; rollback: without checking "
        "the target in Lambda first (no artifacts/verify/predictions.csv here)",
    )
    args = parser.parse_args()
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its INFO lines would bury the one that matters
    p = params.load()
    if args.command == "deploy":
        commands.deploy(p, force=args.force)
    elif args.command == "rollback":
        commands.rollback(p, force=args.force)
    elif args.command == "tune":
        tune.tune(p)
    else:
        teardown.destroy(p, args.yes)


cli.run(main, takes_arguments=True)
