"""The documentation pages (README.md and docs/*.md) stay honest: every python example in them is
run by a test, and every relative link in them points to a file (and heading) that exists."""

import re
from collections import Counter

import pytest

from tests.docs_pages import ROOT, executed_blocks, pages, python_blocks, text

_FENCE = re.compile(r"^```.*?^```[^\n]*$", flags=re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _prose(page):
    """The page without its fenced blocks and inline code, where a [x](y) is not a link."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text(page)))


def _anchors(page):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to '-', repeats numbered."""
    seen, out = Counter(), set()
    for line in _FENCE.sub("", text(page)).splitlines():
        m = re.match(r"#{1,6} (.*)", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            out.add(slug if not seen[slug] else f"{slug}-{seen[slug]}")
            seen[slug] += 1
    return out


def test_pages_are_the_front_page_and_the_docs():
    assert pages()[0] == "README.md" and "docs/README.md" in pages() and len(pages()) >= 9


def test_every_python_block_is_run_by_a_test():
    """test_readme.py and test_cnn_dnn.py run `executed_blocks()`; a block on any page that is not
    among them (a new example, or one moved so its selector no longer finds it) fails here."""
    every = python_blocks()
    assert len(every) >= 5
    run = executed_blocks()
    assert len(set(run)) == len(run), "a block is selected twice"
    missing = [f"{page}: {block.splitlines()[0]!r}" for page, block in every if (page, block) not in run]
    assert not missing, f"python blocks no test runs: {missing}"


def test_no_python_block_hides_behind_another_fence_tag():
    for page in pages():
        for tag in re.findall(r"^```(\S+)", text(page), flags=re.M):
            assert tag == "python" or not tag.lower().startswith("py"), f"{page}: ```{tag}"


@pytest.mark.parametrize("page", pages())
def test_every_relative_link_points_to_an_existing_file(page):
    bad = []
    for target in _LINK.findall(_prose(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (ROOT / page).parent / path if path else ROOT / page
        if not dest.exists():
            bad.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.relative_to(ROOT).as_posix()):
            bad.append(f"{target}: no heading with that anchor")
    assert not bad, f"{page}: {bad}"


def test_the_front_page_is_short_and_links_every_docs_page():
    front = text("README.md")
    assert len(front.splitlines()) <= 200
    linked = set(_LINK.findall(_prose("README.md")))
    assert {p for p in pages() if p.startswith("docs/")} <= linked
