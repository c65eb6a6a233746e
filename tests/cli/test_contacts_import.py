from __future__ import annotations

from outbound.models import Contact

GOOD_AND_BAD = (
    "external_id,name,email,mobile,preferred_channel,notifications_enabled,active\n"
    "c1,Ann,ann@example.com,,email,true,yes\n"
    "c2,Bob,not-an-address,,email,,\n"
    ",No Id,noid@example.com,,,,\n"
    "c3,Cy,cy@example.com,,fax,maybe,\n"
    "c4,Di,di@example.com,,,no,\n"
    "c5,Ed,ed@example.com,,,,,extra\n"
)


def test_import_keeps_valid_rows_and_reports_each_rejected_line(cli, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(GOOD_AND_BAD, encoding="utf-8")
    r = cli("contacts", "import", str(path))
    assert r.code == 1
    assert "2 created, 0 updated, 4 rejected." in r.out
    assert "line 3: email:" in r.out
    assert "line 4: external_id: An external id is required." in r.out
    assert "line 5:" in r.out and "preferred_channel" in r.out and "notifications_enabled" in r.out
    assert "line 7:" in r.out
    assert "4 row(s) rejected" in r.err
    assert "6/6" in r.err  # the progress bar reached the end
    assert sorted(Contact.objects.values_list("external_id", flat=True)) == ["c1", "c4"]
    assert Contact.objects.get(external_id="c4").notifications_enabled is False


def test_import_twice_updates_by_external_id(cli, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text("external_id,name,email\nc1,Ann,ann@example.com\n", encoding="utf-8")
    assert cli("contacts", "import", str(path)).code == 0
    path.write_text("external_id,name\nc1,Ann Smith\n", encoding="utf-8")
    r = cli("contacts", "import", str(path), "--json")
    assert r.code == 0
    assert r.json() == {"created": 0, "updated": 1, "rejected": []}
    contact = Contact.objects.get()
    assert contact.name == "Ann Smith" and contact.email == "ann@example.com"


def test_import_refuses_a_file_without_the_right_columns(cli, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,name\n1,Ann\n", encoding="utf-8")
    r = cli("contacts", "import", str(path))
    assert r.code == 1 and "external_id" in r.err
    path.write_text("external_id,nickname\n1,Ann\n", encoding="utf-8")
    r = cli("contacts", "import", str(path))
    assert r.code == 1 and "nickname" in r.err
    assert cli("contacts", "import", str(tmp_path / "missing.csv")).code == 1
    assert Contact.objects.count() == 0


def test_import_accepts_a_bom_and_stdin(cli):
    r = cli("contacts", "import", "-", stdin="\ufeffexternal_id,name\nz1,Zed\n")
    assert r.code == 0, r.err
    assert Contact.objects.get().name == "Zed"


def test_the_csv_import_reports_the_line_of_a_name_with_a_line_break(cli, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(
        "external_id,name,email\n"
        "c1,Ann,ann@example.com\n"
        'c2,"Bob\nBcc: evil@example.com",bob@example.com\n'
        "c4,Di,di@example.com\n",
        encoding="utf-8",
        newline="",
    )
    r = cli("contacts", "import", str(path))
    assert r.code == 1
    assert "2 created, 0 updated, 1 rejected." in r.out
    assert "line 4: name:" in r.out and "line break" in r.out
    assert sorted(Contact.objects.values_list("external_id", flat=True)) == ["c1", "c4"]


def test_the_csv_import_refuses_a_nul_with_the_line_and_imports_the_rest(cli, tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_text(
        "external_id,name,email\n"
        "c1,Ann\x00Smith,ann@example.com\n"
        "c2\x00,Bob,bob@example.com\n"
        "c3,Cy,cy@example.com\n",
        encoding="utf-8",
    )
    r = cli("contacts", "import", str(path))
    assert r.code == 1, r.err
    assert "1 created, 0 updated, 2 rejected." in r.out
    assert "line 2: name:" in r.out and "NUL" in r.out
    assert "line 3: external_id:" in r.out
    assert list(Contact.objects.values_list("external_id", flat=True)) == ["c3"]
