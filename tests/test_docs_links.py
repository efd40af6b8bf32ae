"""Every relative link of the README and docs/ leads somewhere: the file exists, and a
`#anchor` names a heading of its target as GitHub spells it. Results sections are renamed
as experiments finish; a link left pointing at the old name fails silently on GitHub."""

from __future__ import annotations

import collections
import glob
import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _without_code(text: str) -> str:
  return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(path: str) -> set[str]:
  """The anchors GitHub gives the headings of a Markdown file (repeats get -1, -2, ...)."""
  seen = collections.Counter()
  result = set()
  for line in _without_code(open(path).read()).splitlines():
    match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
    if not match:
      continue
    slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
    result.add(slug if seen[slug] == 0 else f"{slug}-{seen[slug]}")
    seen[slug] += 1
  return result


def broken_links(path: str) -> list[str]:
  """The relative links of a Markdown file that lead nowhere, with why."""
  broken = []
  for link in re.findall(r"\]\(([^)\s]+)\)", _without_code(open(path).read())):
    if re.match(r"[a-z]+:", link):  # https:, mailto:
      continue
    target, _, anchor = link.partition("#")
    target = os.path.normpath(os.path.join(os.path.dirname(path), target)) if target else path
    if not os.path.exists(target):
      broken.append(f"{link}: no such file")
    elif anchor and target.endswith(".md") and anchor not in anchors(target):
      broken.append(f"{link}: no heading with this anchor")
  return broken


DOCS = [os.path.join(REPO, "README.md")] + sorted(glob.glob(os.path.join(REPO, "docs", "*.md")))


@pytest.mark.parametrize("path", DOCS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_leads_somewhere(path):
  assert broken_links(path) == []


def test_the_check_finds_a_missing_file_a_missing_anchor_and_keeps_repeats(tmp_path):
  (tmp_path / "other.md").write_text("# Results: 8,000 steps\n## S<-M and T\n## S<-M and T\n")
  page = tmp_path / "page.md"
  page.write_text(
      "[a](other.md#results-8000-steps) [b](other.md#s-m-and-t-1) [c](#here)\n"
      "[d](missing.md) [e](other.md#results-16000-steps) [f](https://example.org/x#y)\n"
      "# Here\n```\n[g](inside_code.md)\n```\n")
  assert broken_links(str(page)) == ["missing.md: no such file",
                                     "other.md#results-16000-steps: no heading with this anchor"]
