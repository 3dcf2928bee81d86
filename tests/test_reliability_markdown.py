"""Text that visitors or files supply is shown as text: a run id in the address, a file name inside
an uploaded dataset, an uploaded photo's name never become a link, an image (a request to another
host from every visitor's browser) or markup in the dashboard.

Each page is opened with the hostile text, and every piece of markdown it draws is checked for an
unescaped link, image or bare address (``fer.ui.escape_markdown`` escapes them).
"""

from __future__ import annotations

import re

import pytest
from app_driver import no_exception, open_page
from fake_runs import fake_run
from synthetic import write_image_folder
from test_page_dataset import data_dir  # noqa: F401  (fixture)

from fer.runs import experiments_dir
from fer.ui import code_span, escape_markdown

PHISHING = "[Your session expired - sign in](https://evil.example) ![](https://evil.example?who)"
LEAKING_FILE = "![x](https:host?leak) www.evil.example.txt"
LINK = re.compile(r"(?<!\\)\[[^\]]*(?<!\\)\]\(")  # [text]( with neither bracket escaped
BARE = re.compile(r"https?://|www\.|\w@\w", re.IGNORECASE)  # what Markdown links by itself


def markdown_texts(app) -> list[str]:
    """The markdown source of every element that renders markdown."""
    kinds = ("markdown", "caption", "warning", "error", "info", "success", "title", "header", "subheader")
    return [str(element.value) for kind in kinds for element in app.get(kind)]


def assert_no_link(app, hostile: str) -> None:
    shown = [text for text in markdown_texts(app) if "evil" in text or "leak" in text or "host" in text]
    assert shown, f"the page did not mention {hostile!r} at all"
    for text in shown:
        assert not LINK.search(text) and not BARE.search(text), text


def test_escape_markdown_breaks_links_images_and_bare_addresses():
    text = escape_markdown(PHISHING + " mail ada@example.com\n# heading")
    assert not LINK.search(text) and not BARE.search(text) and "\n" not in text
    assert escape_markdown("a_b*c") == "a\\_b\\*c"
    assert code_span("run`1") == "``run`1``" and code_span("plain") == "`plain`"


@pytest.mark.parametrize("page", ["evaluate", "runs"])
def test_a_run_id_in_the_address_is_shown_as_text(page):
    fake_run(experiments_dir(), "real")
    app = open_page(page, query_params={"run": PHISHING})
    no_exception(app)
    assert any("Ignored the run in the address" in text for text in markdown_texts(app))
    assert_no_link(app, PHISHING)


def test_a_file_name_inside_a_dataset_is_shown_as_text(data_dir):  # noqa: F811
    root = write_image_folder(data_dir / "tiny", train=2, test=1)
    (root / "train" / "happy" / LEAKING_FILE).write_text("not an image")
    app = open_page("dataset")
    no_exception(app)
    assert any("non-image" in text for text in markdown_texts(app))
    assert_no_link(app, LEAKING_FILE)


def test_an_uploaded_photos_name_is_shown_as_text(monkeypatch):
    fake_run(experiments_dir(), "model", evaluation=False)
    monkeypatch.setattr("fer.predict.Predictor.load", classmethod(lambda cls, path: object()))
    app = open_page("predict")
    app.file_uploader(key="predict.files").set_value(
        ("![x](https:host?leak) www.evil.example.png", b"not an image", "image/png")).run()
    no_exception(app)
    assert any(text.startswith("####") for text in markdown_texts(app))
    assert_no_link(app, "the photo's name")
