"""Run the installed `outbound` console script as a subprocess against the
test database (committed data: these tests use transactional_db)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.dburl import database_url

SCRIPT = Path(sys.executable).parent / "outbound"


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(transactional_db: None, settings: Any) -> Callable[..., Run]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "config.settings",
    }
    cafile = getattr(settings, "OUTBOUND_SMTP_CAFILE", "")

    def run(*args: str, stdin: str | None = None) -> Run:
        if cafile or getattr(settings, "OUTBOUND_SMTP_CAFILE", ""):
            env["OUTBOUND_SMTP_CAFILE"] = settings.OUTBOUND_SMTP_CAFILE
        proc = subprocess.run(
            [str(SCRIPT), *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    return run
