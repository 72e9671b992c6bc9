"""Every relative link in README.md and docs/*.md leads somewhere: the file exists and, where the link
names an anchor, the target Markdown file has a heading that GitHub gives that anchor."""

import re
from pathlib import Path

import pytest

from support import ROOT

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~)")


def prose(text: str) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed (links and headings there are text)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(re.sub(r"`[^`]*`", "", line) if not line.startswith("#") else line)
    return lines


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading's text: Markdown marks dropped, lower case, every character but
    letters, digits, spaces, hyphens and underscores removed, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text stays
    text = re.sub(r"[`*]", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose(path.read_text()):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = anchor(match.group(1))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def links(path: Path) -> list[str]:
    return [a or b for line in prose(path.read_text()) for a, b in LINK.findall(line)]


def broken(path: Path) -> list[str]:
    """The relative links of a Markdown file that lead nowhere, each with why."""
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not this repository's
            continue
        file, _, fragment = target.partition("#")
        destination = (path.parent / file).resolve() if file else path
        if not destination.exists():
            problems.append(
                f"{target}: no {destination.relative_to(ROOT) if destination.is_relative_to(ROOT) else destination}"
            )
        elif fragment and destination.suffix == ".md" and fragment not in anchors(destination):
            problems.append(f"{target}: no heading #{fragment} in {destination.name}")
    return problems


DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert not broken(path)


def test_anchors_follow_githubs_rule():
    assert anchor("Your own data and your own model") == "your-own-data-and-your-own-model"
    assert anchor("A model of your own (`train.mode: load`)") == "a-model-of-your-own-trainmode-load"
    assert anchor('Releases, rollback and "rejected"') == "releases-rollback-and-rejected"
    assert anchor("The last full run: 2026-12-07, AVX2-only AMD EPYC (Zen 3)") == (
        "the-last-full-run-2026-12-07-avx2-only-amd-epyc-zen-3"
    )


def test_a_missing_file_or_heading_is_found(tmp_path):
    (tmp_path / "other.md").write_text("# Title\n\n## Set up\n\n```bash\n# not a heading\n```\n## Set up\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](other.md#set-up) [ok](other.md#set-up-1) [ok](#here) [web](https://example.com/x#y)\n"
        "`[code](nowhere.md)`\n\n# Here\n\n[bad](gone.md) [bad](other.md#not-a-heading) [bad](#nowhere)\n"
    )
    problems = [p.split(":")[0] for p in broken(page)]
    assert problems == ["gone.md", "other.md#not-a-heading", "#nowhere"]
