"""The README is a user's manual that stays true: short, its links resolve, its commands run.

* README.md is at most 300 lines (the rest lives in docs/ and CONTRIBUTING.md), and every relative
  link in README.md, CONTRIBUTING.md and docs/*.md names a file that exists (and, for a Markdown
  file, a heading that exists).
* "The N commands" is the number of sub-commands `vsd --help` lists, and each one is in the README.
* Every command in the README's fenced ``bash`` blocks is classified by rule: CHEAP ones (seconds,
  nothing outside the repo) are run as written, in README order, from one temporary folder that
  links the repo's jobs/, cluster/, infra/ and vsd/, with the repo's .venv/bin first on PATH (what
  `source .venv/bin/activate` does); NOT_RUN ones (minutes, or a cluster, a GPU or the cloud) are
  skipped with their reason. A command that matches neither list, or both, fails the test: a new
  command in the README has to be put in one, so the lists stay honest.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from tests.fixtures.infra import REPO

README = REPO / "README.md"
MAX_LINES = 300
TIMEOUT_S = 180  # per command; each takes seconds on an idle 2-core machine

# Patterns are matched against a whole command: its lines joined (`\` continuations), its trailing
# comment dropped, a here-document kept as `<first line>\n<body>\n<delimiter>`.
LOCAL = r"(?!s3://)[\w./-]+"  # a local path (an s3:// one would need the cloud)
CHEAP = {
    r"which vsd": "finds the venv's vsd",
    r"vsd( [a-z]+)* --help": "argparse help, no heavy import",
    r"vsd (annotate|train) --help-config": "the config fields, no heavy import",
    rf"vsd data synth --n \d{{1,2}} --out {LOCAL}( --format (png|jpg))?": "a few small synthetic scenes",
    rf"vsd data build --vsd1 {LOCAL} --vsd2 {LOCAL} --images {LOCAL} --out {LOCAL}": "a few records",
    rf"vsd corpus sync --from {LOCAL} --to {LOCAL}": "lists a local folder or manifest",
    rf"vsd corpus info {LOCAL}": "reads a corpus's own files",
    rf"vsd evaluate --pred {LOCAL} --ref {LOCAL} --out {LOCAL} --no-captions": "no Java, a few rows",
    r"cat > [\w.-]+ <<'(\w+)'\n.*\n\1": "writes a file",
    r"python cluster/validate\.py( [\w./*-]+)*": "offline manifest validation, about a second",
}
NOT_RUN = {
    r"make (setup|demo|test|test-sglang)": "sets up the venv, then the demo or the whole suite (minutes to an hour)",
    r"source \.venv/bin/activate": "done here by putting the repo's .venv/bin first on PATH",
    r"vsd demo(?! --help$)( .*)?": "the whole system end to end (minutes)",
    r"vsd train --config .*": "training on Ray Train + DeepSpeed (minutes)",
    r"vsd annotate --config .*": "starts a Ray cluster and a model (and needs the demo's model)",
    r"vsd export .*": "needs a training run",
    r"vsd ask .*": "loads a model (the demo's export, or tiny:llava) and asks about a photo of yours",
    r"vsd show out/photos .*": "needs the annotated output of the command before it",
    r"ray job submit .*": "needs a Ray cluster (and S3)",
    r"kubectl .*": "needs a Kubernetes cluster",
    r"bash infra/release\.sh .*": "builds and pushes the image",
}
LINKED = ("jobs", "cluster", "infra", "vsd")  # what the commands may read from the repo


# --------------------------------------------------------------------------------------------
# Reading Markdown
# --------------------------------------------------------------------------------------------

FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def fenced(text: str, lang: str) -> list[str]:
    return [body for kind, body in FENCE.findall(text) if kind == lang]


def prose(text: str) -> str:
    """The text without its fenced blocks (a link or heading inside code is not one)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: Counter[str] = Counter()
    out = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *$", prose(text), re.M):
        base = slug(heading)
        out.add(base if not seen[base] else f"{base}-{seen[base]}")
        seen[base] += 1
    return out


def commands(block: str) -> list[str]:
    """The commands of a bash block: continuations joined, comment lines skipped, a here-document
    kept with its body."""
    lines, out, i = block.splitlines(), [], 0
    while i < len(lines):
        cmd = lines[i].strip()
        i += 1
        if not cmd or cmd.startswith("#"):
            continue
        while cmd.endswith("\\") and i < len(lines):
            cmd = cmd[:-1].rstrip() + " " + lines[i].strip()
            i += 1
        heredoc = re.search(r"<<-?\s*'?(\w+)'?", cmd)
        if heredoc:
            body = []
            while i < len(lines) and lines[i].strip() != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            cmd = "\n".join([cmd, *body, heredoc.group(1)])
        out.append(cmd)
    return out


def normalised(cmd: str) -> str:
    """What the rules match: the first line's trailing comment dropped (here-documents kept)."""
    first, *rest = cmd.split("\n")
    return "\n".join([re.sub(r"\s+#.*$", "", first).strip(), *rest])


def rule(cmd: str) -> tuple[str, str]:
    """('cheap' | 'not run', the pattern) of a README command; fails the test when not exactly one."""
    text = normalised(cmd)
    hits = [
        (kind, pattern)
        for kind, table in (("cheap", CHEAP), ("not run", NOT_RUN))
        for pattern in table
        if re.fullmatch(pattern, text, re.S)
    ]
    if len(hits) != 1:
        why = "matches no rule" if not hits else f"matches several rules: {hits}"
        pytest.fail(
            f"README command {text!r} {why}: add it to CHEAP (seconds, nothing outside the repo) or "
            "to NOT_RUN (with the reason) in tests/test_readme.py"
        )
    return hits[0]


def readme_commands() -> list[str]:
    return [cmd for block in fenced(README.read_text(), "bash") for cmd in commands(block)]


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


def test_readme_is_a_short_manual():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_LINES}): move detail to docs/"
    )


@pytest.mark.parametrize(
    "doc", [README, REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))], ids=lambda p: p.name
)
def test_relative_links_resolve(doc: Path):
    text = doc.read_text()
    broken = []
    for target in re.findall(r"\[[^\]]*\]\(([^)\s]+)\)", prose(text)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(f"{target}: no file {file}")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            broken.append(f"{target}: no heading #{anchor} in {file.name}")
    assert not broken, f"{doc.name}: broken links:\n" + "\n".join(broken)


def test_the_command_count_is_the_cli_s():
    from vsd.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    names = list(sub.choices)
    words = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen".split()
    title = re.search(r"^## The (\w+) commands$", README.read_text(), re.M)
    assert title, "README.md: no '## The <N> commands' section"
    assert title.group(1) == words[len(names)], f"`vsd --help` lists {len(names)} sub-commands: {names}"
    missing = [n for n in names if f"`vsd {n}" not in README.read_text()]
    assert not missing, f"README.md's command table lacks: {missing}"


def test_every_readme_command_has_one_rule_and_every_cheap_rule_a_command():
    used = {rule(cmd) for cmd in readme_commands()}
    # a NOT_RUN rule may wait for its command (make setup, kubectl); a CHEAP one left unused tests nothing
    unused = [pattern for pattern in CHEAP if ("cheap", pattern) not in used]
    assert not unused, f"CHEAP rules that no README command uses: {unused}"


def test_readme_commands_run_as_written(tmp_path):
    for name in LINKED:
        (tmp_path / name).symlink_to(REPO / name)
    venv_bin = REPO / ".venv" / "bin"
    env = {
        **os.environ,
        "PATH": f"{venv_bin}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(REPO / ".venv"),
        "PYTHONPATH": str(REPO),  # this checkout's code, whatever the venv was installed from
        "RAY_AUTH_MODE": "disabled",
        "HF_HUB_OFFLINE": "1",
    }
    ran = 0
    for cmd in readme_commands():
        if rule(cmd)[0] != "cheap":
            continue
        proc = subprocess.run(
            ["bash", "-c", cmd], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
        )
        assert proc.returncode == 0, (
            f"README command failed (exit {proc.returncode}):\n{cmd}\n{proc.stdout}{proc.stderr}"
        )
        ran += 1
    assert ran >= len(CHEAP)
