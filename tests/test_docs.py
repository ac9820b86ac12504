"""The README and docs/ pages: every `dcrobench` command they show parses, every relative link resolves.

Which commands are checked, and how (the extraction rule):

* every fenced code block of README.md and docs/*.md; a line ending in a backslash is joined to the next;
* a line's `# comment` (a ``#`` after whitespace) is dropped, the rest is split at ``&&`` and ``;``, and each
  part that starts with ``dcrobench `` is a command (so ``pip install -e . && dcrobench run ...`` counts);
* bracketed optional parts ``[...]`` (nested too) are checked both ways: once with every bracketed part
  dropped, once with every one kept (brackets removed), so an option shown as optional must exist too;
* an alternative ``a|b|c`` takes its first choice (``--protocol quick|paper|file.yaml`` -> ``quick``);
* an upper-case placeholder word (``M``, ``D``, ``N``, ``DIR``, ``FILE...``, ``MEAN,STD``) becomes a sample value,
  ``1`` for ``N`` (counts), ``x`` otherwise; a bare ``...`` / ``…`` is dropped.

Each command is parsed by the real Click CLI without running it: ``make_context`` (resilient parsing off) down
through the groups to the subcommand, which raises on an unknown command or option, a missing required one or
a value of the wrong type (``--budget x``). The shell's globs (``package/data/*``) reach Click unexpanded.
"""

import re
import shlex
from pathlib import Path

import click
import pytest

from dcrobench.cli import main

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
README_MAX_LINES = 150


def fenced_lines(text: str):
    """The lines of every fenced code block, backslash continuations joined."""
    out, fence, pending = [], False, ""
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fence, pending = not fence, ""
            continue
        if not fence:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        out.append(pending + line)
        pending = ""
    return out


def strip_brackets(text: str, keep: bool) -> str:
    inner = re.compile(r"\[([^\[\]]*)\]")
    while inner.search(text):
        text = inner.sub(lambda m: m.group(1) if keep else "", text)
    return text


def sample(token: str) -> str | None:
    if token in ("...", "…"):
        return None
    token = token.split("|")[0]
    word = token.removesuffix("...").removesuffix("…")
    if re.fullmatch(r"[A-Z][A-Z0-9_]*(,[A-Z][A-Z0-9_]*)*", word):
        return "1" if word == "N" else "x"
    return token


def commands(text: str):
    """(shown line, argv without 'dcrobench') for each command and each bracket reading of it."""
    found = []
    for line in fenced_lines(text):
        line = re.split(r"\s#", line, maxsplit=1)[0]
        for part in re.split(r"&&|;", line):
            part = part.strip()
            if not part.startswith("dcrobench "):
                continue
            for keep in (False, True):
                args = [sample(t) for t in shlex.split(strip_brackets(part, keep))[1:]]
                reading = (part, [a for a in args if a is not None])
                if reading not in found:
                    found.append(reading)
    return found


def parse(args: list[str]) -> None:
    """Parse args as the CLI would, down through its groups, without invoking any command."""
    cmd, ctx, name = main, None, "dcrobench"
    while True:
        ctx = cmd.make_context(name, list(args), parent=ctx, resilient_parsing=False)
        if not isinstance(cmd, click.Group):
            return
        protected = ctx._protected_args if hasattr(ctx, "_protected_args") else ctx.protected_args  # Click < 8.2
        rest = [*protected, *ctx.args]
        assert rest, f"no subcommand after {name!r}"
        name, args = rest[0], rest[1:]
        sub = cmd.get_command(ctx, name)
        if sub is None:
            raise click.UsageError(f"no such command {name!r}", ctx)
        cmd = sub


ALL = [(page.relative_to(REPO).as_posix(), shown, args)
       for page in PAGES for shown, args in commands(page.read_text(encoding="utf-8"))]


def test_the_pages_show_commands():
    assert (REPO / "docs").is_dir() and len(PAGES) > 5
    assert len({shown for _, shown, _ in ALL}) >= 20


@pytest.mark.parametrize("page,shown,args", ALL, ids=[f"{p}:{' '.join(a)[:60]}" for p, _, a in ALL])
def test_every_shown_command_parses(page, shown, args):
    try:
        parse(args)
    except click.ClickException as e:  # UsageError, NoSuchOption, BadParameter, MissingParameter
        pytest.fail(f"{page}: `{shown}` does not parse as {args}: {e.format_message()}")


LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


@pytest.mark.parametrize("page", PAGES, ids=[p.relative_to(REPO).as_posix() for p in PAGES])
def test_every_relative_link_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    missing = []
    for target in LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
            continue  # a URL or an anchor within the page
        path = target.split("#", 1)[0]
        if not (page.parent / path).exists():
            missing.append(target)
    assert not missing, f"{page.name}: links to missing files: {missing}"


def test_the_readme_is_short():
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_the_readme_links_every_docs_page():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for page in (REPO / "docs").glob("*.md"):
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"


def test_the_readme_test_command_is_what_ci_runs():
    ci = (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = 'pip install -e ".[test]" && python -m pytest -q'
    assert command in ci and command in readme


README_ROWS = {"Raw": "full", "Rand-500": "random", "DM-500": "dm"}
SCORES = ("standard", "ℓ∞ robust", "ℓ2 robust")
MEAN_STD = re.compile(r"^(-?\d+\.\d\d) ± (\d+\.\d\d)")


def published_reproduction() -> dict[tuple[str, str], tuple[str, str, int | None]]:
    """(method, score) -> (paper's mean ± std, ours mean ± std, our seeds) of the committed leaderboard's table 3, MNIST."""
    text = (REPO / "leaderboard" / "README.md").read_text(encoding="utf-8")
    section = text.split("### Table 3, MNIST", 1)[1].split("\n### ", 1)[0]
    out = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 8 and cells[0] == "mnist":
            paper, ours = MEAN_STD.match(cells[4]), MEAN_STD.match(cells[5])
            n = re.search(r"n=(\d+)$", cells[5])
            out[(cells[1], cells[3])] = (paper.group(0), ours.group(0) if ours else "–", int(n.group(1)) if n else None)
    return out


def test_the_readmes_reproduction_table_quotes_the_committed_leaderboard():
    """The README quotes Table 3's MNIST rows; each number must be the published leaderboard's (no stale copy)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    published = published_reproduction()
    quoted = 0
    for line in readme.split("## Reproducing the paper", 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        m = re.match(r"^(Raw|Rand-500|DM-500), (paper|ours)\b.*?\((?:.*; )?(\d) seeds\)$", cells[0]) if len(cells) == 4 else None
        if not m:
            continue
        method, who, seeds = README_ROWS[m.group(1)], m.group(2), int(m.group(3))
        for score, value in zip(SCORES, cells[1:]):
            paper, ours, n = published[(method, score)]
            expected = paper if who == "paper" else ours
            assert value == expected, f"README: {m.group(1)} {who} {score}: {value}, the leaderboard says {expected}"
            if who == "ours":
                assert seeds == n, f"README: {m.group(1)} ours from {seeds} seeds, the leaderboard from {n}"
            quoted += 1
    assert quoted == 18
