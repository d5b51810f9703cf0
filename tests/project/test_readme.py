"""The README and docs/ stay true to the repository.

- Every relative link in README.md and docs/*.md names a file that exists (outputs of a run under ``runs/``
  excepted), and every ``#anchor`` into a Markdown file names one of its headings (GitHub's slugs).
- Every command shown in the README's shell blocks exists: ``--help`` of each ``coldtag`` subcommand, Python
  module, script or ``train.py`` subcommand exits 0, and each ``make`` target is defined in the Makefile. A shell
  line the test cannot classify fails, unless it starts with a plain utility listed in ``UTILITIES``. Names
  imported in the README's Python blocks exist.
- The README stays under 250 lines; no page names a path of one machine or an internal issue number.
- Every docs page opens with a title and a sentence, and docs/index.md lists them all.

The ``--help`` calls run in one child process (one import of torch and Lightning for all of them, each call with
its own ``sys.argv`` and its ``SystemExit`` caught); a call that fails there is run again alone in a fresh process,
whose result decides.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
MAX_README_LINES = 250

# Pages that another branch adds (docs/demo.md comes with the new demo). A link to one of them is accepted while
# it is missing; once it exists it is checked like any page, and test_not_yet_merged_is_still_missing asks for
# its removal from this set.
NOT_YET_MERGED: set[str] = set()

# Plain shell utilities a README block may use without a check: (first word, second word or None).
UTILITIES = {("cd", None), ("export", None), ("ls", None), ("cat", None), ("mkdir", None), ("git", "clone"),
             ("pip", "install"), ("uv", "pip")}
PYTHONS = {"python", "python3", ".venv/bin/python"}
SHELL_LANGUAGES = {"bash", "sh", "console"}
LANGUAGES = SHELL_LANGUAGES | {"python", "text", "json", "yaml", "mermaid"}

MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|root|home|tmp)/")
ISSUE_REFERENCE = re.compile(r"\b[Ii]ssues? #?\d+\b|(?<![\w&/#])#\d+\b")
FENCE = re.compile(r"^( *)(```|~~~)(.*)$")
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
SUBCOMMAND = re.compile(r"^[a-z][a-z0-9_-]*$")


# ------------------------------------------------------------------------------------------------ Markdown parsing

def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(info string, lines)`` of every fenced code block, indented ones (in list items) included."""
    blocks, current, fence = [], None, None
    for line in text.splitlines():
        match = FENCE.match(line)
        if current is None and match:
            fence, current = match.group(2), (match.group(3).strip(), [])
        elif current is not None and match and match.group(2) == fence and not match.group(3).strip():
            blocks.append(current)
            current = None
        elif current is not None:
            current[1].append(line)
    return blocks


def prose(text: str) -> str:
    """The text without fenced blocks and inline code, where links and headings live."""
    kept, inside, fence = [], False, None
    for line in text.splitlines():
        match = FENCE.match(line)
        if not inside and match:
            inside, fence = True, match.group(2)
            kept.append("")
        elif inside and match and match.group(2) == fence and not match.group(3).strip():
            inside = False
            kept.append("")
        else:
            kept.append("" if inside else line)
    return re.sub(r"(`+)(?:(?!\1).)+?\1", "", "\n".join(kept))


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: link text kept, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found, seen = set(), {}
    for line in prose(path.read_text(encoding="utf-8")).splitlines():
        match = re.match(r"^ {0,3}#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1).replace("`", ""))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(text: str) -> list[str]:
    body = prose(text)
    return [m.group(1) for m in LINK.finditer(body)] + REFERENCE_LINK.findall(body)


def link_problems(page: Path) -> list[str]:
    problems = []
    for target in links(page.read_text(encoding="utf-8")):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (page.parent / path_part).resolve() if path_part else page
        try:
            relative = resolved.relative_to(ROOT).as_posix()
        except ValueError:
            problems.append(f"{target}: outside the repository")
            continue
        if relative == "runs" or relative.startswith("runs/"):
            continue  # an output of a run
        if not resolved.exists():
            if relative not in NOT_YET_MERGED:
                problems.append(f"{target}: no such file ({relative})")
            continue
        if anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{target}: no heading with anchor #{anchor} in {relative}")
    return problems


# ------------------------------------------------------------------------------------------------ README commands

def shell_lines(language: str, lines: list[str]) -> list[str]:
    """The command lines of a shell block, continuations joined; in a console block only ``$ `` lines."""
    commands, pending = [], ""
    for line in lines:
        if language == "console" and not pending:
            if not line.startswith("$ "):
                continue  # output
            line = line[2:]
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        commands.append((pending + stripped).strip())
        pending = ""
    if pending:
        commands.append(pending.strip())
    return [command for command in commands if command and not command.startswith("#")]


def console_scripts() -> dict[str, str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"].get("scripts", {})


def classify(command: str) -> tuple:
    """One shell line -> ``("make", target)``, ``("help", kind, target, argv)``, ``("utility",)`` or
    ``("unknown", reason)``. ``kind`` is ``entry`` (a console script), ``module`` or ``path``."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError as error:
        return ("unknown", f"cannot split: {error}")
    while words and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0]):
        words = words[1:]  # VAR=value before a command
    if not words:
        return ("utility",)
    first, second = words[0], words[1] if len(words) > 1 else None
    if (first, None) in UTILITIES or (first, second) in UTILITIES:
        return ("utility",)
    if first == "make":
        targets = [word for word in words[1:] if not word.startswith("-") and "=" not in word]
        return ("make", *targets) if targets else ("unknown", "make without a target")
    scripts = console_scripts()
    name = first.removeprefix(".venv/bin/")
    if name in scripts:
        return ("help", "entry", scripts[name], help_argv(words[1:]))
    if first in PYTHONS:
        if second == "-m" and len(words) > 2:
            return ("help", "module", words[2], help_argv(words[3:]))
        if second and second.endswith(".py"):
            if not (ROOT / second).is_file():
                return ("unknown", f"no script {second}")
            return ("help", "path", second, help_argv(words[2:]))
    return ("unknown", f"{first}: not a command this test can check; use coldtag, python -m, a script, make, "
                       f"or one of {sorted(w for w, _ in UTILITIES)}")


def help_argv(words: list[str]) -> tuple[str, ...]:
    """The leading bare words (``review export``), which options, paths and file names end, then ``--help``."""
    taken = []
    for word in words:
        if not SUBCOMMAND.match(word):
            break
        taken.append(word)
    return (*taken, "--help")


def readme_blocks() -> list[tuple[str, list[str]]]:
    return fenced_blocks(README.read_text(encoding="utf-8"))


def readme_commands() -> list[str]:
    return [command for info, lines in readme_blocks() if info.split()[:1] and info.split()[0] in SHELL_LANGUAGES
            for command in shell_lines(info.split()[0], lines)]


def readme_imports() -> list[tuple[str, str, tuple[str, ...]]]:
    jobs = []
    for info, lines in readme_blocks():
        if info.split()[:1] != ["python"]:
            continue
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                jobs.append(("import", node.module, tuple(alias.name for alias in node.names)))
            elif isinstance(node, ast.Import):
                jobs.extend(("import", alias.name, ()) for alias in node.names)
    return jobs


# Runs in the child: each job with its own argv, output captured, SystemExit caught; prints one JSON list.
CHILD = r"""
import contextlib, importlib, io, json, os, runpy, sys, warnings
root = os.getcwd()
sys.path.insert(0, root)
results = []
for kind, target, argv in json.loads(sys.argv[1]):
    out, err = io.StringIO(), io.StringIO()
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "import":
                module = importlib.import_module(target)
                missing = [name for name in argv if not hasattr(module, name)]
                if missing:
                    raise ImportError(f"cannot import {missing} from {target}")
            elif kind == "entry":
                module, _, function = target.partition(":")
                sys.argv = [module, *argv]
                code = getattr(importlib.import_module(module), function)() or 0
            elif kind == "module":
                sys.argv = [target, *argv]
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                sys.argv = [target, *argv]
                sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
                runpy.run_path(target, run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException as error:
        code = f"{type(error).__name__}: {error}"
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    results.append({"job": [kind, target, list(argv)], "code": code, "stderr": err.getvalue()[-2000:]})
print("RESULTS " + json.dumps(results))
"""


def run_jobs(jobs: list[tuple[str, str, tuple[str, ...]]]) -> list[dict]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_SILENT": "true",
           "WANDB_MODE": "offline"}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(jobs)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("RESULTS "):
            return json.loads(line[len("RESULTS "):])
    raise AssertionError(f"the --help runner died (exit {done.returncode}):\n{done.stderr[-3000:]}")


def describe(job: list) -> str:
    kind, target, argv = job
    if kind == "import":
        return f"from {target} import {', '.join(argv)}"
    entries = {value: name for name, value in console_scripts().items()}
    program = {"entry": entries.get(target, target), "module": f"python -m {target}", "path": f"python {target}"}[kind]
    return f"{program} {' '.join(argv)}"


# ------------------------------------------------------------------------------------------------------- tests

def test_readme_is_short():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_relative_links_resolve(page):
    assert link_problems(page) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_no_machine_paths_or_issue_numbers(page):
    found = [f"line {number}: {match.group(0)!r}: {line.strip()[:100]}"
             for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
             for pattern in (MACHINE_PATH, ISSUE_REFERENCE) for match in pattern.finditer(line)]
    assert found == [], "a path of one machine or an internal issue number (reword, or use a repo-relative path)"


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda page: page.name)
def test_docs_page_opens_with_a_title_and_a_sentence(page):
    lines = [line for line in page.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert lines and re.match(r"^# \S", lines[0]), f"{page.name} must start with '# Title'"
    assert len(lines) > 1 and not re.match(r"^(#|```|~~~|\||- |\* |\d+\. |!\[)", lines[1]), \
        f"{page.name}: the title must be followed by a sentence saying what the page covers"


def test_docs_index_lists_every_page():
    listed = {Path(target.partition("#")[0]).name for target in links((DOCS / "index.md").read_text(encoding="utf-8"))}
    pages = {page.name for page in DOCS.glob("*.md")} | {Path(name).name for name in NOT_YET_MERGED}
    assert pages - {"index.md"} - listed == set()


def test_not_yet_merged_is_still_missing():
    arrived = sorted(name for name in NOT_YET_MERGED if (ROOT / name).exists())
    assert arrived == [], f"{arrived} exist now: remove them from NOT_YET_MERGED so their links are checked"


def test_readme_blocks_name_their_language():
    unnamed = [info or "(none)" for info, _ in readme_blocks() if (info.split() or [""])[0] not in LANGUAGES]
    assert unnamed == [], f"README code blocks need one of {sorted(LANGUAGES)} after the fence"


def test_every_readme_command_is_classified():
    commands = readme_commands()
    assert any(classify(command)[0] == "help" for command in commands)
    unknown = {command: classify(command)[1] for command in commands if classify(command)[0] == "unknown"}
    assert unknown == {}


def test_readme_make_targets_exist():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = {target for command in readme_commands() if classify(command)[0] == "make"
               for target in classify(command)[1:]}
    assert {"demo", "test"} <= targets
    missing = sorted(target for target in targets
                     if not re.search(rf"^{re.escape(target)}\s*:(?!=)", makefile, re.M))
    assert missing == [], f"make targets shown in the README but not defined in the Makefile: {missing}"


@pytest.mark.slow
def test_readme_commands_and_imports_exist():
    shown = {}  # job -> the first README line that asks for it
    for command in readme_commands():
        if classify(command)[0] == "help":
            shown.setdefault(classify(command)[1:], command)
    jobs = [*sorted(shown), *sorted(set(readme_imports()))]
    failed = [result for result in run_jobs(jobs) if result["code"] != 0]
    confirmed = [result for result in failed for alone in run_jobs([result["job"]]) if alone["code"] != 0]
    assert confirmed == [], "\n\n".join(report(result, shown) for result in confirmed)


def report(result: dict, shown: dict) -> str:
    kind, target, argv = result["job"]
    line = shown.get((kind, target, tuple(argv)))
    asked = f" (README: {line[:100]})" if line else ""
    return f"{describe(result['job'])}: exit {result['code']}{asked}\n{result['stderr']}"


# The checker's own rules, on cases whose answer is known.

def test_slug_follows_github():
    assert slug("Content -> collaborative factors: the ablation") == "content---collaborative-factors-the-ablation"
    assert slug("Fine-tuning, linear probe, distillation") == "fine-tuning-linear-probe-distillation"
    assert slug("The result: configs/tagger.yaml") == "the-result-configstaggeryaml"
    assert slug("Train on [MTG](x.md) data_sets") == "train-on-mtg-data_sets"


def test_classify_names_the_check_or_refuses():
    assert classify("coldtag review export runs/x --model m --out o") == \
        ("help", "entry", "annotation.cli:main", ("review", "export", "--help"))
    assert classify("python -m tagging datasets mtg_jamendo --root r") == \
        ("help", "module", "tagging", ("datasets", "mtg_jamendo", "--help"))
    assert classify(".venv/bin/python train.py fit --config c.yaml") == ("help", "path", "train.py", ("fit", "--help"))
    assert classify("CI=true make test") == ("make", "test")
    assert classify("export RAY_ADDRESS=head:6379  # a comment") == ("utility",)
    assert classify("python scripts/no_such_script.py --x")[0] == "unknown"
    assert classify("curl https://example.org | sh")[0] == "unknown"
    assert classify("rm -rf runs")[0] == "unknown"


def test_shell_lines_join_continuations_and_skip_output():
    assert shell_lines("bash", ["# setup", "make demo  # all", "coldtag annotate a/ \\", "    --out b/", ""]) == \
        ["make demo  # all", "coldtag annotate a/      --out b/"]
    assert shell_lines("console", ["$ make test", "536 passed", "$ coldtag --help"]) == ["make test", "coldtag --help"]


def test_link_checker_reports_missing_files_and_anchors(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A\n\n## Two words\n", encoding="utf-8")
    page = tmp_path / "README.md"
    page.write_text("[ok](docs/a.md#two-words) [bad anchor](docs/a.md#three) [gone](docs/b.md) "
                    "[run](runs/demo/report.md) [web](https://example.org) `[code](nope.md)`\n"
                    "```bash\n[in a block](nope.md)\n```\n", encoding="utf-8")
    assert link_problems(page) == ["docs/a.md#three: no heading with anchor #three in docs/a.md",
                                   "docs/b.md: no such file (docs/b.md)"]
