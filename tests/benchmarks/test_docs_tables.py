"""The figure tables of README.md and docs/*.md are the ones ``benchmarks/render.py`` makes.

Every ``<!-- table: ID -->`` block must hold exactly what ``python benchmarks/render.py``
writes there from ``benchmarks/results/*.json`` (``render.py --check``). A block whose
benchmark has not written its JSON file yet fails, unless ``LESIONBOOST_ALLOW_MISSING_RESULTS=1``
is set, which skips it and says which script to run.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from _bench import render  # benchmarks/render.py

ALLOW_MISSING = os.environ.get("LESIONBOOST_ALLOW_MISSING_RESULTS") == "1"


def _blocks() -> list[tuple[Path, render.Block]]:
    return [
        (path, block)
        for path in render.documents()
        for block in render.find_blocks(path.read_text(encoding="utf8"))
    ]


BLOCKS = _blocks()


def _missing_files(table_id: str) -> list[str]:
    """The result files a table id needs that do not exist (``summary/headline``: its parts')."""
    names = (
        list(render.HEADLINE_PARTS)
        if table_id == render.HEADLINE_ID
        else [table_id.split("/", 1)[0]]
    )
    missing = [
        f"benchmarks/results/{name}.json"
        for name in names
        if not (render.RESULTS / f"{name}.json").is_file()
    ]
    if table_id == render.HEADLINE_ID and len(missing) < len(names):
        return []  # the headline stacks the parts that have a recorded run
    return missing


# --------------------------------------------------------------------------- render_text
DOC = """# Title

Some text.

<!-- table: demo/scores -->
stale content typed by hand
<!-- /table -->

```markdown
<!-- table: demo/scores -->
<!-- /table -->
```

<!-- table: demo/other -->
<!-- /table -->
"""


def test_render_text_fills_a_block_and_is_idempotent() -> None:
    table = render.Table(
        "demo/scores", ["model", "pAUC"], [["LightGBM", "0.1370"], ["oracle", "0.1759"]], "Seed 0."
    )
    once = render.render_text(DOC, {"demo/scores": table})
    expected = render.render_table(table)
    assert f"<!-- table: demo/scores -->\n{expected}\n<!-- /table -->" in once
    assert "stale content" not in once
    assert "| LightGBM | 0.1370 |" in once and "_Seed 0._" in once
    # a block inside a fenced code block and a block without a table are left as they are
    assert "```markdown\n<!-- table: demo/scores -->\n<!-- /table -->\n```" in once
    assert "<!-- table: demo/other -->\n<!-- /table -->" in once
    assert render.render_text(once, {"demo/scores": table}) == once
    # the JSON form renders the same
    assert render.render_text(DOC, {"demo/scores": table.to_dict()}) == once
    # check semantics: the filled block is up to date; the empty one lacks its table
    problems = render.check_text(once, {"demo/scores": table})
    assert [p.split(": ")[1] for p in problems] == ["demo/other"]
    assert any("differs from its JSON" in p for p in render.check_text(DOC, {"demo/scores": table}))


def test_render_text_refuses_an_unclosed_block() -> None:
    with pytest.raises(ValueError, match="has no <!-- /table -->"):
        render.render_text("<!-- table: a/b -->\ntext\n", {})


def test_the_docs_hold_table_blocks() -> None:
    ids = {block.id for _, block in BLOCKS}
    assert render.HEADLINE_ID in ids and "quality/models" in ids


# --------------------------------------------------------------------------- committed docs
@pytest.fixture(scope="module")
def tables() -> dict[str, render.Table]:
    return render.load_tables(render.RESULTS)


@pytest.mark.parametrize(
    ("path", "block"),
    BLOCKS,
    ids=[f"{path.name}:{block.line}:{block.id}" for path, block in BLOCKS],
)
def test_committed_block_is_what_render_writes(
    path: Path, block: render.Block, tables: dict[str, render.Table]
) -> None:
    text = path.read_text(encoding="utf8")
    if block.id not in tables:
        missing = _missing_files(block.id)
        if missing and ALLOW_MISSING:
            pytest.skip(
                f"{block.id}: {', '.join(missing)} not written yet (run the benchmark at full "
                "size; LESIONBOOST_ALLOW_MISSING_RESULTS=1 allows this)"
            )
        problems = render.check_text(text, tables, name=path.name)
        pytest.fail(next(p for p in problems if p.split(": ")[1] == block.id))
    rendered = render.render_table(tables[block.id]) + "\n"
    assert text[block.start : block.end] == rendered, (
        f"{path.name}:{block.line}: {block.id} differs from its JSON; "
        "run `python benchmarks/render.py`"
    )
