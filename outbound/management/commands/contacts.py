from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from outbound.errors import InvalidInput
from outbound.management.commands._output import write_json
from outbound.services.contacts import clean_contact_data, upsert_contact

COLUMNS = (
    "external_id",
    "name",
    "email",
    "mobile",
    "preferred_channel",
    "notifications_enabled",
    "active",
)
TRUE = {"1", "true", "yes", "y", "on"}
FALSE = {"0", "false", "no", "n", "off"}


@dataclass
class ImportSummary:
    created: int = 0
    updated: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)


def _row_data(row: dict[str, str | None]) -> dict[str, Any]:
    """The contact fields of one CSV row; an empty cell leaves the field as it is."""
    data: dict[str, Any] = {}
    errors: dict[str, list[str]] = {}
    for column in COLUMNS[1:]:
        raw = (row.get(column) or "").strip()
        if not raw:
            continue
        if column in ("notifications_enabled", "active"):
            if raw.lower() in TRUE:
                data[column] = True
            elif raw.lower() in FALSE:
                data[column] = False
            else:
                errors[column] = [f"{raw!r} is not true or false."]
        else:
            data[column] = raw
    if errors:
        # Report the other fields' problems too, so one pass over the file
        # shows everything to fix on this line.
        try:
            clean_contact_data(data)
        except InvalidInput as err:
            errors = {**err.errors, **errors}
        raise InvalidInput(errors)
    return data


class Command(BaseCommand):
    help = "Contacts: import a CSV file (upsert by external id)."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True, metavar="import")
        imp = sub.add_parser(
            "import",
            help=f"Create or update contacts from a CSV with the columns {', '.join(COLUMNS)}.",
        )
        imp.add_argument("file", help="The CSV file (UTF-8; - for standard input).")
        imp.add_argument("--json", action="store_true", help="Print the summary as JSON.")
        imp.add_argument("--quiet", action="store_true", help="No progress bar.")

    def handle(self, *args: Any, **options: Any) -> None:
        rows = self._read(options["file"])
        summary = ImportSummary()
        total = len(rows)
        show_progress = not options["quiet"]
        for done, (line, row) in enumerate(rows, start=1):
            self._import_row(line, row, summary)
            if show_progress and (done == total or done % 50 == 0):
                self._progress(done, total)
        if show_progress and total:
            self.stderr.write("")
        self._report(summary, options["json"])
        if summary.rejected:
            raise CommandError(
                f"{len(summary.rejected)} row(s) rejected; the other rows were imported.",
                returncode=1,
            )

    def _read(self, name: str) -> list[tuple[int, dict[str, str | None]]]:
        try:
            text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as err:
            raise CommandError(f"Cannot read {name}: {err}", returncode=1) from err
        # Spreadsheet exports often start with a byte order mark.
        reader = csv.DictReader(io.StringIO(text.removeprefix("\ufeff"), newline=""))
        header = [h.strip() for h in (reader.fieldnames or [])]
        reader.fieldnames = header
        if "external_id" not in header:
            raise CommandError(
                f"{name}: the first line must name the columns, including external_id "
                f"(known columns: {', '.join(COLUMNS)}).",
                returncode=1,
            )
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            raise CommandError(
                f"{name}: unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}.",
                returncode=1,
            )
        try:
            # line_num counts physical lines, so a quoted multi-line cell still
            # reports the line a person sees in an editor.
            return [(reader.line_num, row) for row in reader]
        except csv.Error as err:
            raise CommandError(f"{name}: line {reader.line_num}: {err}", returncode=1) from err

    def _import_row(self, line: int, row: dict[str, str | None], summary: ImportSummary) -> None:
        external_id = (row.get("external_id") or "").strip()
        extra = row.get(None)  # type: ignore[call-overload]
        try:
            if extra:
                raise InvalidInput({"__all__": [f"{len(extra)} more cell(s) than columns."]})
            if not external_id:
                raise InvalidInput({"external_id": ["An external id is required."]})
            # Each row is its own transaction (inside the service): a bad row
            # leaves nothing half-written and does not undo the good ones.
            _, created = upsert_contact(
                external_id=external_id, data=_row_data(row), actor="cli import"
            )
        except InvalidInput as err:
            summary.rejected.append(
                {"line": line, "external_id": external_id, "errors": err.errors}
            )
            return
        if created:
            summary.created += 1
        else:
            summary.updated += 1

    def _progress(self, done: int, total: int) -> None:
        width = 30
        filled = int(width * done / total) if total else width
        bar = "#" * filled + "-" * (width - filled)
        self.stderr.write(f"\r[{bar}] {done}/{total}", ending="")
        self.stderr.flush()

    def _report(self, summary: ImportSummary, as_json: bool) -> None:
        if as_json:
            write_json(
                self.stdout,
                {
                    "created": summary.created,
                    "updated": summary.updated,
                    "rejected": summary.rejected,
                },
            )
            return
        self.stdout.write(
            f"{summary.created} created, {summary.updated} updated, "
            f"{len(summary.rejected)} rejected."
        )
        for item in summary.rejected:
            reasons = "; ".join(
                f"{field}: {' '.join(msgs)}" if field != "__all__" else " ".join(msgs)
                for field, msgs in item["errors"].items()
            )
            self.stdout.write(f"  line {item['line']}: {reasons}")
