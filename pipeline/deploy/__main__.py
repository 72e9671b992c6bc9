"""The deploy command line: one subcommand is required, and a bare `python -m pipeline.deploy` prints
this help and exits 2 (a usage error, as argparse gives any missing argument): a command that ships to
AWS is named, never a default, so a script that forgot it stops instead of deploying."""

import argparse
import logging
import sys

from pipeline import cli, params

PROG = "python -m pipeline.deploy"
DESCRIPTION = """\
Ship the recommended variant (params.yaml: deploy) to AWS Lambda, and look after it.
AWS credentials and region from the environment (AWS_PROFILE or AWS_ACCESS_KEY_ID/...);
AWS_ENDPOINT_URL points every call at a stand-in. docs/deploy-commands.md has the details."""
EPILOG = """\
what touches AWS:  deploy, rollback, destroy, tune write; deploy --dry-run, status, url, logs only read.
`make deploy` (DRY_RUN=1, FORCE=1), `make rollback`, `make destroy`, `make tune`, `make status` and
`make logs` run the commands of the same name."""

COMMANDS = {  # name: (one line for the list, the command's own description)
    "deploy": (
        "build, smoke-test, publish and make live the recommended variant",
        "Build the function (image or zip), smoke-test it, publish a version and move 'live' to it\n"
        "(all at once, or as a canary under alarms: deploy.strategy). Nothing changed: nothing is done.",
    ),
    "rollback": (
        "move 'live' back to the previous good version (or end a canary)",
        "Move 'live' back to the previous live version that was not rolled back from, after it answers\n"
        "the smoke test in Lambda; the version left is rejected (deploy does not make it live again).\n"
        "During a canary: all traffic back on the released version.",
    ),
    "destroy": (
        "delete everything deploy made (asks first)",
        "Delete the function, its versions, API, repository, role, log group, alarms and buckets:\n"
        "only what deploy made (tagged); asks first unless --yes.",
    ),
    "tune": (
        "sweep the deployed function's memory sizes, then restore it",
        "Invoke $LATEST at each of tune.memory_mb (params.yaml), read Lambda's REPORT lines, write\n"
        "artifacts/tune/, and put the function's configuration back.",
    ),
    "status": (
        "the live version, its release history, a canary in progress, the URL",
        "What is live and where: reads AWS only (another machine's deploys included).",
    ),
    "url": (
        "print the URL of the live endpoint",
        'Print the live endpoint\'s URL, read from AWS, alone on one line: curl -XPOST "$(... url)" ...',
    ),
    "logs": (
        "the function's recent CloudWatch Logs lines",
        "Print the function's log lines (one JSON line per request, Lambda's START/END/REPORT lines)\n"
        "from its CloudWatch Logs group, oldest first.",
    ),
}


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be more than 0, not {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its error
    return parse


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog=PROG, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = top.add_subparsers(dest="command", metavar="COMMAND", title="commands", required=True)
    made = {}
    for name, (summary, description) in COMMANDS.items():
        made[name] = sub.add_parser(
            name, help=summary, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
        )
    made["deploy"].add_argument(
        "--dry-run",
        action="store_true",
        help="say what would be built, published and moved, and the URL; build nothing, write nothing to AWS",
    )
    made["deploy"].add_argument(
        "--force",
        action="store_true",
        help="ship a variant less accurate than the live one (deploy.max_accuracy_drop), with other labels, "
        "or a version 'live' was rolled back from",
    )
    made["rollback"].add_argument(
        "--force",
        action="store_true",
        help="move 'live' without checking the target in Lambda first (no artifacts/recommend/release.json here)",
    )
    made["destroy"].add_argument("--yes", action="store_true", help="delete without asking")
    made["logs"].add_argument(
        "--minutes", type=positive(float), default=30, help="how far back to read (default: %(default)s)"
    )
    made["logs"].add_argument(
        "--limit", type=positive(int), default=100, help="print at most the last this many lines (default: %(default)s)"
    )
    made["logs"].add_argument(
        "--filter",
        default="",
        metavar="PATTERN",
        help="a CloudWatch Logs filter pattern, e.g. '{ $.status >= 500 }' or REPORT (default: every line)",
    )
    return top


def main(argv: "list[str] | None" = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    top = parser()
    if not argv:  # the whole help, not argparse's one-line "required: COMMAND": this is how people look
        top.print_help(sys.stderr)
        sys.exit(2)
    args = top.parse_args(argv)
    logging.getLogger("botocore").setLevel(logging.WARNING)  # its INFO lines would bury the one that matters
    # The deploy modules import boto3 and pandas: loaded only once the command line is good.
    from pipeline.deploy import commands, plan, status, teardown, tune

    p = params.load()
    if args.command == "deploy" and args.dry_run:
        plan.plan(p, force=args.force)
    elif args.command == "deploy":
        commands.deploy(p, force=args.force)
    elif args.command == "rollback":
        commands.rollback(p, force=args.force)
    elif args.command == "tune":
        tune.tune(p)
    elif args.command == "destroy":
        teardown.destroy(p, args.yes)
    elif args.command == "status":
        status.status(p)
    elif args.command == "url":
        print(status.url(p))
    elif args.command == "logs":
        status.logs(p, minutes=args.minutes, limit=args.limit, pattern=args.filter)


if __name__ == "__main__":
    cli.run(main, takes_arguments=True)
