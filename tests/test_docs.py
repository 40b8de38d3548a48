"""The user documentation: the README stays a short guide, every relative link in it and in
docs/ leads to a file, docs/configuration.md matches the config schema, and the product files
(README, docs, configs) speak of the product only, not of how it was made."""

import importlib.util
import re
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
DOCS = REPO / "docs"
STUDIES = REPO / "studies"
MAX_README_LINES = 250

# Talk of how the product was made: issue numbers, runs in progress, who saw which machine.
PROCESS_TALK = [
    (re.compile(r"\bissues?\s*#?\d+", re.IGNORECASE), "an issue number"),
    (re.compile(r"(?<![\w&/#])#\d+\b"), "a #N reference"),
    (re.compile(r"we have also seen", re.IGNORECASE), "'we have also seen'"),
    (re.compile(r"was not at hand", re.IGNORECASE), "'was not at hand'"),
    (re.compile(r"in progress", re.IGNORECASE), "a run in progress"),
    (re.compile(r"still training", re.IGNORECASE), "a run still training"),
    (re.compile(r"\bsessions?\b", re.IGNORECASE), "'session'"),
]

LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def user_pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def product_files() -> list[Path]:
    return [*user_pages(), *sorted((REPO / "configs").rglob("*.yaml"))]


def relative_links(text: str) -> list[str]:
    """The link targets of a Markdown text that point at files: no URLs, no pure anchors,
    nothing inside code blocks or code spans; an anchor after '#' is dropped."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    text = re.sub(r"`[^`\n]*`", "code", text)
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0])
    return targets


def broken_links(page: Path, into_studies: bool) -> list[str]:
    broken = []
    for target in relative_links(page.read_text()):
        resolved = (page.parent / target).resolve()
        if resolved.is_relative_to(STUDIES) != into_studies:
            continue
        if not resolved.exists():
            broken.append(f"{page.relative_to(REPO)}: {target}")
    return broken


def process_talk(path: Path) -> list[str]:
    found = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        for pattern, what in PROCESS_TALK:
            match = pattern.search(line)
            if match:
                found.append(f"{path.relative_to(REPO)}:{number}: {what}: {match.group(0)!r}")
    return found


def config_docs():
    spec = importlib.util.spec_from_file_location("config_docs", REPO / "scripts" / "config_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_readme_is_a_short_guide():
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines; keep it at most {MAX_README_LINES} and move depth into docs/")


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(REPO / target).resolve() for target in relative_links(README.read_text())}
    unlinked = [page.name for page in sorted(DOCS.glob("*.md")) if page.resolve() not in linked]
    assert not unlinked, f"docs pages the README does not link to: {unlinked}"


def test_relative_links_resolve():
    broken = [link for page in user_pages() for link in broken_links(page, into_studies=False)]
    assert not broken, "links to files that do not exist:\n" + "\n".join(broken)


def test_links_into_studies_resolve():
    if not STUDIES.is_dir():
        pytest.skip("studies/ does not exist yet: the study write-ups have not been moved there")
    broken = [link for page in user_pages() for link in broken_links(page, into_studies=True)]
    assert not broken, "links to studies that do not exist:\n" + "\n".join(broken)


def test_product_files_speak_of_the_product_only():
    found = [hit for path in product_files() for hit in process_talk(path)]
    assert not found, "development-process talk in product files:\n" + "\n".join(found)


def test_configuration_page_matches_the_schema():
    message = config_docs().stale_message()
    assert message is None, message
