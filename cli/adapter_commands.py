"""`certfed feed|roll|forms|bank|notify`: the adapters from a terminal.

    certfed feed import FILE --config node.toml --mapping hospital_admissions [--rejects R.csv]
    certfed feed mappings
    certfed roll import ROLL.csv|ROLL.xlsx --config node.toml --mapping core_system
    certfed roll mappings
    certfed forms import FORM.xlsx --config node.toml [--out SENT.xlsx]
    certfed forms export SENT.xlsx --config node.toml [--out RESULTS.xlsx]
    certfed forms overseas REQUEST_ID --config node.toml --out FORM.xlsx
    certfed bank export --config node.toml --month 2025-09 --bank ICBC-4406 --out-dir DIR [--force]
    certfed notify run --config node.toml (--webhook URL | --outbox-file P | --sms-config S.toml)
                       [--wechat-config W.toml] [--concurrency N] [--max-per-second R]

Every command talks to the node's DeskService with the operator token in
CERTFED_OPERATOR_TOKEN, like `certfed desk`. Exit codes: 0 done; 1 nothing done (an error
printed); 2 done, but some rows or reminders could not be handled (listed).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.table import Table

from adapters.aliyun_sms import AliyunSmsNotifier, load_aliyun_sms_config
from adapters.bank_files import DeskPaymentInstructions, export_bank_file
from adapters.feed_mappings import builtin_mapping_names, load_mapping
from adapters.feeds import DEFAULT_BATCH_SIZE
from adapters.gateway_http import DEFAULT_CONCURRENCY as GATEWAY_CONCURRENCY
from adapters.notifiers import (
    DeskReminders,
    Notifier,
    OutboxFileNotifier,
    WebhookNotifier,
    run_notifications,
)
from adapters.overseas_forms import export_overseas_form
from adapters.partner_forms import form_file
from adapters.partner_requests import FormSummary, fill_form_results, submit_form
from adapters.roll import DEFAULT_BATCH_SIZE as ROLL_BATCH_SIZE
from adapters.roll import FORMATS as ROLL_FORMATS
from adapters.roll_mappings import builtin_roll_mapping_names, load_roll_mapping
from adapters.wechat_templates import FirstOf, WeChatTemplateNotifier, load_wechat_config
from cli.arguments import batch_size, gateway_concurrency, month, page_size, per_second
from cli.desk import add_connection_arguments, desk_client
from cli.feed_import import import_feed_file
from cli.output import console
from cli.roll_import import import_roll_file
from federation.errors import InvalidInputError
from federation_node.config import load_node_config

PARTIAL = 2


def _summary_table(title: str, rows: list[tuple[str, int]]) -> Table:
    table = Table(title=title)
    table.add_column("")
    table.add_column("rows", justify="right")
    for name, count in rows:
        table.add_row(name, f"{count:,}")
    return table


# feed


def _feed_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    rejects_path = Path(args.rejects) if args.rejects else path.with_suffix(".rejects.csv")
    with desk_client(args) as desk:
        summary = import_feed_file(
            desk,
            path,
            mapping_name=args.mapping,
            source=args.source,
            fmt=args.format,
            batch_size=args.batch_size,
            rejects_path=rejects_path,
        )
    console.print(
        _summary_table(
            f"{path.name}: {summary.rows:,} rows",
            [
                ("applied", summary.applied),
                ("duplicates (imported before)", summary.duplicates),
                ("unknown persons (not paid here)", summary.unknown_persons),
                ("ignored (no change)", summary.ignored),
                ("awaiting a second person's approval", summary.awaiting_approval),
                ("rejected", summary.rejected),
            ],
        )
    )
    if summary.rejected:
        console.print(f"rejected rows, with line and reason: {rejects_path}")
        return PARTIAL
    return 0


def _feed_mappings(_args: argparse.Namespace) -> int:
    table = Table(title="shipped feed mappings (--mapping NAME, or a path to your own .toml)")
    for column in ("name", "source", "columns", "description"):
        table.add_column(column)
    for name in builtin_mapping_names():
        mapping = load_mapping(name)
        table.add_row(name, mapping.source, ", ".join(mapping.columns), mapping.description)
    console.print(table)
    return 0


# roll


def _roll_import(args: argparse.Namespace) -> int:
    path = Path(args.file)
    rejects_path = Path(args.rejects) if args.rejects else path.with_suffix(".rejects.csv")
    with desk_client(args) as desk:
        summary = import_roll_file(
            desk,
            path,
            mapping_name=args.mapping,
            fmt=args.format,
            sheet=args.sheet,
            batch_size=args.batch_size,
            rejects_path=rejects_path,
        )
    console.print(
        _summary_table(
            f"{path.name}: {summary.rows:,} rows",
            [
                ("registered", summary.created),
                ("updated (changed since the last import)", summary.updated),
                ("unchanged", summary.unchanged),
                ("monthly amount changes awaiting a reviewer", summary.amount_changes),
                ("rejected", summary.rejected),
            ],
        )
    )
    if summary.amount_changes:
        console.print("a reviewer approves amount changes: certfed desk ... amount-changes")
    if summary.rejected:
        console.print(f"rejected rows, with line, column and reason: {rejects_path}")
        return PARTIAL
    return 0


def _roll_mappings(_args: argparse.Namespace) -> int:
    table = Table(title="shipped roll mappings (--mapping NAME, or a path to your own .toml)")
    for column in ("name", "columns", "description"):
        table.add_column(column)
    for name in builtin_roll_mapping_names():
        mapping = load_roll_mapping(name)
        table.add_row(name, ", ".join(mapping.columns.values()), mapping.description)
    console.print(table)
    return 0


# forms


def _print_form_summary(summary: FormSummary, out: Path, verb: str) -> int:
    console.print(
        _summary_table(
            f"{summary.rows:,} rows; written to {out}",
            [
                (verb, summary.requested),
                ("already requested (not sent again)", summary.already_requested),
                ("not done", summary.failed),
            ],
        )
    )
    for row, reason in summary.problems:
        console.print(f"row {row}: {reason}")
    return PARTIAL if summary.failed else 0


def _default_out(path: Path, tag: str) -> Path:
    return path.with_name(f"{path.stem}-{tag}{path.suffix}")


def _forms(args: argparse.Namespace) -> int:
    path = Path(args.file)
    layout = form_file(path)
    exporting = args.forms_command == "export"
    out = Path(args.out) if args.out else _default_out(path, "results" if exporting else "sent")
    out_layout = form_file(out)
    table = layout.read(path, args.sheet)
    with desk_client(args) as desk:
        summary = fill_form_results(desk, table) if exporting else submit_form(desk, table)
    out_layout.write(out, table)
    return _print_form_summary(summary, out, "looked up" if exporting else "requested")


def _overseas_form(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with desk_client(args) as desk:
        export_overseas_form(desk, args.request_id, out)
    console.print(f"overseas certification form for request {args.request_id} written to {out}")
    return 0


# bank


def _bank_export(args: argparse.Namespace) -> int:
    with desk_client(args) as desk:
        result = export_bank_file(
            DeskPaymentInstructions(desk),
            bank=args.bank,
            month=args.month,
            directory=Path(args.out_dir),
            force=args.force,
        )
    console.print(f"{result.path}: {result.outcome.value}, {result.instructions:,} instructions")
    return 0


# notify


def _notifier(args: argparse.Namespace) -> Notifier:
    """The gateway the options name; WeChat and SMS together: WeChat where the person bound an
    account, SMS for everyone else."""
    if args.webhook:
        return WebhookNotifier(args.webhook)
    if args.outbox_file:
        return OutboxFileNotifier(Path(args.outbox_file))
    chain: list[Notifier] = []
    if args.wechat_config:
        chain.append(WeChatTemplateNotifier(load_wechat_config(Path(args.wechat_config))))
    if args.sms_config:
        chain.append(AliyunSmsNotifier(load_aliyun_sms_config(Path(args.sms_config))))
    if not chain:
        raise InvalidInputError(
            "notify run", "give --webhook, --outbox-file, --sms-config or --wechat-config"
        )
    return chain[0] if len(chain) == 1 else FirstOf(chain)


def _notify_run(args: argparse.Namespace) -> int:
    config = load_node_config(Path(args.config))
    notifier = _notifier(args)
    office = args.office or config.display_name or config.node_id
    with desk_client(args) as desk:
        summary = run_notifications(
            DeskReminders(desk),
            notifier,
            office=office,
            page_size=args.page_size,
            # A file is written at disk speed: one writer. A gateway answers after a network
            # round trip: several reminders wait on it at once.
            concurrency=args.concurrency or (1 if args.outbox_file else GATEWAY_CONCURRENCY),
            max_per_second=args.max_per_second,
        )
    console.print(
        _summary_table(
            "reminders",
            [
                ("sent and acknowledged", summary.acknowledged),
                ("refused by the gateway (left for the next run)", summary.refused),
                ("no phone number (left; add one to the beneficiary)", summary.no_phone),
            ],
        )
    )
    for problem in summary.problems:
        console.print(problem)
    return PARTIAL if summary.refused or summary.no_phone else 0


def _subcommands(subparsers: Any, name: str, help_text: str, dest: str) -> Any:
    """The sub-commands of a new `certfed <name>`."""
    parser = subparsers.add_parser(name, help=help_text)
    return parser.add_subparsers(dest=dest, required=True)


def add_adapter_commands(subparsers: Any) -> None:
    feed = _subcommands(subparsers, "feed", "import data-signal feeds (CSV, JSON Lines)", "feed")
    feed_import = feed.add_parser("import", help="record a feed's rows as data signals")
    feed_import.add_argument("file", help="the feed: .csv, .jsonl or .ndjson")
    add_connection_arguments(feed_import)
    feed_import.add_argument(
        "--mapping", required=True, help="a shipped mapping's name or a mapping .toml file"
    )
    feed_import.add_argument("--source", help="source name, if not the mapping's")
    feed_import.add_argument("--format", choices=["csv", "jsonl"], help="if not the file's suffix")
    feed_import.add_argument("--batch-size", type=batch_size, default=DEFAULT_BATCH_SIZE)
    feed_import.add_argument("--rejects", help="CSV of rejected rows (default FILE.rejects.csv)")
    feed_import.set_defaults(handler=_feed_import)
    feed.add_parser("mappings", help="list the shipped mappings").set_defaults(
        handler=_feed_mappings
    )

    roll = _subcommands(subparsers, "roll", "the office's roll (CSV, XLSX): who it pays", "roll")
    roll_import = roll.add_parser("import", help="register or update each row's beneficiary")
    roll_import.add_argument("file", help="the roll: .csv or .xlsx")
    add_connection_arguments(roll_import)
    roll_import.add_argument(
        "--mapping", required=True, help="a shipped roll mapping's name or a mapping .toml file"
    )
    roll_import.add_argument("--format", choices=list(ROLL_FORMATS), help="if not the suffix's")
    roll_import.add_argument("--sheet", help="the roll's sheet in a workbook of several")
    roll_import.add_argument(
        "--batch-size",
        type=batch_size,
        default=ROLL_BATCH_SIZE,
        help=f"rows per call (default {ROLL_BATCH_SIZE:,})",
    )
    roll_import.add_argument("--rejects", help="CSV of rejected rows (default ROLL.rejects.csv)")
    roll_import.set_defaults(handler=_roll_import)
    roll.add_parser("mappings", help="list the shipped roll mappings").set_defaults(
        handler=_roll_mappings
    )

    forms = _subcommands(
        subparsers, "forms", "Hong Kong / Macau assistance forms (在生证明协查表)", "forms_command"
    )
    for name, help_text in (
        ("import", "register and request certification for each row; write the ids back"),
        ("export", "write each row's request status and certification result"),
    ):
        command = forms.add_parser(name, help=help_text)
        command.add_argument("file", help="the form: .csv or .xlsx")
        add_connection_arguments(command)
        command.add_argument("--out", help="where to write the form back (.csv or .xlsx)")
        command.add_argument("--sheet", help="the form's sheet, if not 在生证明协查表")
        command.set_defaults(handler=_forms)
    overseas = forms.add_parser(
        "overseas", help="an overseas post's certification form (审核表) for one inbound request"
    )
    overseas.add_argument("request_id", help="the request the post received")
    add_connection_arguments(overseas)
    overseas.add_argument("--out", required=True, help="where to write the form (.csv or .xlsx)")
    overseas.set_defaults(handler=_overseas_form)

    bank = _subcommands(subparsers, "bank", "payment-instruction files for banks", "bank_command")
    bank_export = bank.add_parser("export", help="the month's payment instructions as CSV")
    add_connection_arguments(bank_export)
    bank_export.add_argument("--month", required=True, type=month, help="YYYY-MM")
    bank_export.add_argument("--bank", required=True, help="the bank's code, used in the name")
    bank_export.add_argument("--out-dir", required=True, help="folder the bank picks files from")
    bank_export.add_argument(
        "--force", action="store_true", help="replace a different file for the same month"
    )
    bank_export.set_defaults(handler=_bank_export)

    notify = _subcommands(subparsers, "notify", "send reminders and overdue notices", "notify")
    notify_run = notify.add_parser("run", help="send pending reminders; acknowledge the sent")
    add_connection_arguments(notify_run)
    target = notify_run.add_mutually_exclusive_group()
    target.add_argument("--webhook", help="gateway URL that takes a JSON POST per message")
    target.add_argument("--outbox-file", help="append messages to this JSON Lines file")
    target.add_argument("--sms-config", help="Alibaba Cloud SMS settings (.toml)")
    notify_run.add_argument(
        "--wechat-config",
        help="WeChat template-message settings (.toml); with --sms-config, SMS for the rest",
    )
    notify_run.add_argument("--office", help="office name in the text (default: display_name)")
    notify_run.add_argument("--page-size", type=page_size, default=100)
    notify_run.add_argument(
        "--concurrency",
        type=gateway_concurrency,
        help=f"reminders with the gateway at once (default {GATEWAY_CONCURRENCY}; 1 for a file)",
    )
    notify_run.add_argument(
        "--max-per-second",
        type=per_second,
        help="start at most this many reminders a second (the gateway's contracted rate)",
    )
    notify_run.set_defaults(handler=_notify_run)
