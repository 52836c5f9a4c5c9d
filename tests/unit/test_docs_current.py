"""The generated docs are current: regenerating them changes nothing that is committed."""

from __future__ import annotations

from pathlib import Path

from scripts import gen_docs

DOCS = Path(__file__).resolve().parents[2] / "docs"
HINT = "docs/ is out of date with the code: run `make docs` and commit the result"


def test_regenerated_docs_are_identical_to_the_committed_ones(tmp_path: Path) -> None:
    files = gen_docs.render()
    gen_docs.write(tmp_path, files)

    generated = sorted(
        path.relative_to(tmp_path).as_posix() for path in tmp_path.rglob("*") if path.is_file()
    )
    assert generated == sorted(files)
    stale = [
        relative
        for relative in generated
        if not (DOCS / relative).is_file()
        or (DOCS / relative).read_bytes() != (tmp_path / relative).read_bytes()
    ]
    assert not stale, f"{HINT} (stale or missing: {', '.join(stale)})"
    orphans = sorted(
        path.relative_to(DOCS).as_posix()
        for path in (DOCS / gen_docs.OPENAPI_DIR).glob("*.json")
        if path.relative_to(DOCS).as_posix() not in files
    )
    assert not orphans, f"{HINT} (documents of services that no longer exist: {orphans})"


def test_every_service_with_an_app_has_an_openapi_document() -> None:
    documents = gen_docs.openapi_documents()
    for package in gen_docs.service_packages("app"):
        assert f"{gen_docs.OPENAPI_DIR}/{package}.json" in documents, package


def test_rendering_is_deterministic() -> None:
    assert gen_docs.render() == gen_docs.render()


def test_every_setting_is_documented_with_its_environment_variable() -> None:
    configuration = gen_docs.configuration_md()
    for package in gen_docs.service_packages("settings"):
        model = gen_docs.settings_class(package)
        assert model is not None, package
        for name in model.model_fields:
            assert f"| `{name.upper()}` |" in configuration, (package, name)
