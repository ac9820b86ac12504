"""The leaderboard web page: its rows, its escaping, and (in a headless Chromium) its tables, sort and filters."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from dcrobench.aggregate import cells
from dcrobench.results import load_records
from dcrobench.webpage import COLUMNS, Column, asset, page_rows, render_page, script_json, visible_columns, write_page

from .helpers import score_record

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)")


def synthetic_records():
    """Five cells: two norms, two kinds, a full-set baseline (no budget); two seeds in most."""
    return [score_record("random", 0, 0.60, 0.20, kind="baseline"), score_record("random", 1, 0.62, 0.22, kind="baseline"),
            score_record("herding", 0, 0.70, 0.35), score_record("herding", 1, 0.72, 0.33),
            score_record("gm", 0, 0.80, 0.10, kind="condensation"),
            score_record("full", 0, 0.95, 0.75, kind="baseline", budget=None),
            score_record("herding", 0, 0.71, 0.50, norm="l2"), score_record("random", 0, 0.61, 0.45, norm="l2",
                                                                         kind="baseline")]


# --- pure -----------------------------------------------------------------------------------------------------------
def test_page_rows_hold_numbers_and_provenance_per_cell():
    records = synthetic_records()
    rows = page_rows(cells(records), records)
    assert len(rows) == len(cells(records)) == 6
    herding = next(r for r in rows if r["method"] == "herding" and r["norm"] == "linf")
    assert herding["seeds"] == 2 and herding["robust_mean"] == pytest.approx(0.34)
    assert herding["robust_std"] == pytest.approx(0.02 / 2 ** 0.5) and isinstance(herding["standard_mean"], float)
    assert (herding["protocol"], herding["version"], herding["protocol_hash"]) == ("quick", 1, "h1")
    assert herding["dcrobench_version"] == "test" and herding["date"] == "2026-01-01T00:00:00+00:00"
    linf = [r for r in rows if r["norm"] == "linf"]
    assert linf[0]["budget"] is None and [r["method"] for r in linf[1:]] == ["random", "herding", "gm"]  # full first


def test_extra_row_keys_become_columns_before_the_provenance():
    rows = [{"protocol": "p", "version": 1, "method": "m", "robust_mean": 0.5, "delta_vs_random": 0.1,
             "protocol_hash": "h"}]
    assert [c.key for c in visible_columns(rows)] == ["method", "robust_mean", "delta_vs_random", "protocol_hash"]
    assert visible_columns(rows)[2].format == "num"
    custom = visible_columns(rows, [*COLUMNS[:11], Column("delta_vs_random", "Δ vs Random %", "pct"), *COLUMNS[11:]])
    assert [c.label for c in custom][2] == "Δ vs Random %"


def test_a_record_string_cannot_break_out_of_the_data_script():
    evil = "</script><script>alert(1)</script><!--"
    records = [score_record(evil, 0, 0.5, 0.2, dataset=evil)]
    page = render_page(page_rows(cells(records), records), [(evil, "plots/x.png")], title=evil)
    assert "<script>alert(1)" not in page and "alert(1)</script>" not in page
    assert page.count("</script>") == 2  # the data element's and the code's, nothing else
    data = re.search(r'<script type="application/json" id="leaderboard-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(data)["rows"][0]["method"] == evil
    assert json.loads(script_json({"s": "a&b\u2028"})) == {"s": "a&b\u2028"}


def test_page_is_self_contained_with_relative_plot_paths():
    records = synthetic_records()
    page = render_page(page_rows(cells(records), records), [("quick v1 · mnist5k · linf", "plots/a.png")])
    assert 'src="plots/a.png"' in page and "<noscript>" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no CDN, no remote resource
    assert "<script src" not in page and '<link rel="stylesheet"' not in page


def test_css_and_js_come_from_the_asset_files_inlined_and_deterministic():
    import dcrobench.webpage as webpage

    assets = ROOT / "dcrobench" / "assets"
    css, js = (assets / "page.css").read_text(encoding="utf-8"), (assets / "page.js").read_text(encoding="utf-8")
    assert asset("page.css") == css and asset("page.js") == js
    records = synthetic_records()
    page = render_page(page_rows(cells(records), records))
    assert f"<style>{css}</style>" in page and f"<script>{js}</script>" in page
    assert render_page(page_rows(cells(records), records)) == page
    assert not hasattr(webpage, "_CSS") and not hasattr(webpage, "_SCRIPT")  # no copies left as strings
    assert "table.primary-columns .secondary { display: none; }" in css and "td.score { font-weight" not in css


def test_the_columns_a_reader_needs_first_are_primary():
    primary = [c.key for c in COLUMNS if c.primary]
    assert primary == ["method", "kind", "dataset", "model", "norm", "budget", "seeds", "standard_mean",
                       "robust_mean", "robust_vs_random", "robust_verdict"]
    assert not any(c.primary for c in visible_columns([{"protocol": "p", "version": 1, "attack:cw": 0.1, "x": 1}]))


# --- headless Chromium ----------------------------------------------------------------------------------------------
class _Rows(HTMLParser):
    """The data rows of every table in a dumped DOM: per row, column key -> raw value (or the shown text)."""

    def __init__(self):
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self._col: str | None = None
        self._text = ""
        self._value: str | None = None
        self.tables: list[set[str]] = []  # each table's classes
        self.row_classes: list[set[str]] = []  # each data row's classes
        self.cell_classes: list[dict[str, set[str]]] = []  # per data row, column key -> the cell's classes
        self.buttons: dict[str, str] = {}  # id -> text

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        if tag == "table":
            self.tables.append(classes)
        elif tag == "tr" and "entry" in classes:
            self.rows.append({})
            self.row_classes.append(classes)
            self.cell_classes.append({})
        elif tag == "td" and self.rows and "data-col" in attrs:
            self._col, self._value, self._text = attrs["data-col"], attrs.get("data-value"), ""
            self.cell_classes[-1][attrs["data-col"]] = classes
        elif tag == "button" and attrs.get("id"):
            self._button, self.buttons[attrs["id"]] = attrs["id"], ""

    _button: str | None = None

    def handle_data(self, data):
        if self._col is not None:
            self._text += data
        elif self._button is not None:
            self.buttons[self._button] += data

    def handle_endtag(self, tag):
        if tag == "td" and self._col is not None:
            self.rows[-1][self._col] = self._value if self._value is not None else self._text
            self._col = None
        elif tag == "button":
            self._button = None


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", f"--user-data-dir={tmp / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True)


def dom(page: Path, fragment: str = "", *, tmp: Path) -> _Rows:
    parser = _Rows()
    parser.feed(_chromium("--virtual-time-budget=5000", "--dump-dom", page.as_uri() + fragment, tmp=tmp).stdout)
    return parser


def dom_rows(page: Path, fragment: str = "", *, tmp: Path) -> list[dict[str, str]]:
    return dom(page, fragment, tmp=tmp).rows


def screenshot(page: Path, shot: Path, *, tmp: Path) -> Path:
    _chromium("--window-size=1400,1000", "--hide-scrollbars", f"--screenshot={shot}", page.as_uri(), tmp=tmp)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return shot


@pytest.fixture
def synthetic_page(tmp_path):
    return write_page(synthetic_records(), tmp_path / "site")


@needs_chromium
def test_page_renders_one_row_per_cell(synthetic_page, tmp_path):
    rows = dom_rows(synthetic_page, tmp=tmp_path)
    assert len(rows) == 6
    assert {(r["method"], r["norm"]) for r in rows} == {("random", "linf"), ("herding", "linf"), ("gm", "linf"),
                                                        ("full", "linf"), ("herding", "l2"), ("random", "l2")}
    herding = next(r for r in rows if r["method"] == "herding" and r["norm"] == "linf")
    assert float(herding["robust_mean"]) == pytest.approx(0.34) and herding["budget"] == "50"
    assert next(r for r in rows if r["method"] == "full")["budget"] == "full"


@needs_chromium
def test_sort_from_the_url_fragment_orders_rows_by_robust_score(synthetic_page, tmp_path):
    desc = [float(r["robust_mean"]) for r in dom_rows(synthetic_page, "#sort=robust_mean&dir=desc", tmp=tmp_path)]
    assert len(desc) == 6 and desc == sorted(desc, reverse=True)
    asc = [float(r["robust_mean"]) for r in dom_rows(synthetic_page, "?sort=robust_mean&dir=asc", tmp=tmp_path)]
    assert asc == sorted(desc)
    methods = [r["method"] for r in dom_rows(synthetic_page, "#sort=method&dir=asc", tmp=tmp_path)]
    assert methods == sorted(methods)


@needs_chromium
def test_filters_from_the_url_fragment_show_only_matching_rows(synthetic_page, tmp_path):
    l2 = dom_rows(synthetic_page, "#norm=l2", tmp=tmp_path)
    assert len(l2) == 2 and {r["norm"] for r in l2} == {"l2"}
    assert [r["method"] for r in dom_rows(synthetic_page, "#method=HERD&norm=linf", tmp=tmp_path)] == ["herding"]
    assert [r["method"] for r in dom_rows(synthetic_page, "#budget=full", tmp=tmp_path)] == ["full"]
    assert dom_rows(synthetic_page, "#kind=nonesuch", tmp=tmp_path) == []


@needs_chromium
def test_screenshot_of_the_synthetic_page(synthetic_page, tmp_path):
    assert screenshot(synthetic_page, tmp_path / "synthetic.png", tmp=tmp_path).stat().st_size > 10_000


@needs_chromium
def test_page_of_the_committed_records_renders_every_cell_and_its_plots(tmp_path):
    from dcrobench.leaderboard import PLOTS_DIR, plot_specs

    records = load_records(ROOT / "leaderboard" / "records")
    site = tmp_path / "site"
    shutil.copytree(ROOT / "leaderboard" / PLOTS_DIR, site / PLOTS_DIR)
    specs = plot_specs(cells(records))
    page = write_page(records, site, [(s.title, f"{PLOTS_DIR}/{s.file}") for s in specs])
    rows = dom_rows(page, tmp=tmp_path)
    assert len(rows) == len(cells(records))
    # per-attack columns only in the tables of versions that ran the extra attacks
    with_attacks = [c for c in cells(records) if c.attack_means()]
    assert with_attacks and sum("attack:cw" in r for r in rows) == len(with_attacks)
    assert all((site / PLOTS_DIR / s.file).is_file() for s in specs)
    screenshot(page, tmp_path / "committed.png", tmp=tmp_path)


def test_publish_writes_the_page_and_check_flags_a_stale_one(tmp_path):
    from dcrobench.leaderboard import check_published, publish, publish_command

    records = synthetic_records()
    written = publish(records, tmp_path, publish_command(tmp_path, tmp_path), plots=False)
    page = tmp_path / "index.html"
    assert str(page) in written and "leaderboard-data" in page.read_text()
    assert check_published(records, tmp_path, tmp_path, plots=False) == []
    page.write_text(page.read_text().replace("herding", "herdinG"))
    assert any("index.html: out of date" in p for p in check_published(records, tmp_path, tmp_path, plots=False))


@needs_chromium
def test_default_view_hides_the_secondary_columns_and_the_toggle_shows_them(synthetic_page, tmp_path):
    default = dom(synthetic_page, tmp=tmp_path)
    assert default.tables == [{"primary-columns"}]
    assert default.buttons["toggle-columns"].startswith("Show all columns")
    cells_ = default.cell_classes[0]
    assert "secondary" not in cells_["robust_mean"] and "secondary" not in cells_["method"]
    assert {"secondary", "prov"} <= cells_["device"] and "secondary" in cells_["robust_std"]
    assert len(default.rows) == 6 and "robust_std" in default.rows[0]  # hidden, not dropped: sorting still sees them
    hidden_sort = [r["robust_std"] for r in dom_rows(synthetic_page, "#sort=robust_std&dir=asc", tmp=tmp_path)]
    stds = [float(v) for v in hidden_sort if v != "–"]  # single-seed cells have none: last
    assert len(stds) == 2 and hidden_sort == [*map(str, sorted(stds)), *["–"] * 4]
    # a click on the toggle (a script appended to a copy of the page) shows every column
    clicked = synthetic_page.with_name("clicked.html")
    clicked.write_text(synthetic_page.read_text().replace(
        "</body>", '<script>document.getElementById("toggle-columns").click()</script></body>'))
    shown = dom(clicked, tmp=tmp_path)
    assert shown.tables == [{"all-columns"}] and shown.buttons["toggle-columns"] == "Show fewer columns"
    assert dom(synthetic_page, "#columns=all&norm=l2", tmp=tmp_path).tables == [{"all-columns"}]


def _bold(parser: _Rows, key: str) -> list[str]:
    return [row["method"] + "/" + row["norm"] for row, classes in zip(parser.rows, parser.cell_classes)
            if "best" in classes[key]]


@needs_chromium
def test_only_the_best_scores_are_bold_among_the_shown_entries(synthetic_page, tmp_path):
    page = dom(synthetic_page, tmp=tmp_path)
    # the full-data reference (robust 75%) is not a contender; herding on l2 (50%) and gm (80% standard) are best
    assert _bold(page, "robust_mean") == ["herding/l2"] and _bold(page, "standard_mean") == ["gm/linf"]
    assert sum("best" in c for classes in page.cell_classes for c in classes.values()) == 2
    assert _bold(dom(synthetic_page, "#norm=linf", tmp=tmp_path), "robust_mean") == ["herding/linf"]


@needs_chromium
def test_the_reference_row_survives_a_budget_filter(tmp_path):
    records = [*synthetic_records(), score_record("random", 0, 0.5, 0.1, kind="baseline", budget=10)]
    page = write_page(records, tmp_path / "site")
    ten = dom(page, "#budget=10", tmp=tmp_path)
    assert [(r["method"], r["budget"]) for r in ten.rows] == [("full", "full"), ("random", "10")]
    assert ten.row_classes[0] == {"entry", "reference"} and ten.row_classes[1] == {"entry"}
    assert len(dom_rows(page, "#budget=50", tmp=tmp_path)) == 6  # five at 50 and the reference
    assert dom_rows(page, "#budget=10&norm=l2", tmp=tmp_path) == []  # the other filters still apply to it
