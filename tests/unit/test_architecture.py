"""The dependency rule, enforced: domain models stay pure."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "clearhouse"
INFRASTRUCTURE = (
    "sqlalchemy",
    "alembic",
    "psycopg",
    "fastapi",
    "starlette",
    "httpx",
    "duckdb",
    "typer",
    "rich",
)
MODELS = sorted(SRC.rglob("model.py"))


@pytest.mark.parametrize("path", MODELS, ids=lambda p: str(p.relative_to(SRC)))
def test_models_import_no_infrastructure(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert not imported & set(INFRASTRUCTURE), f"{path} imports {imported & set(INFRASTRUCTURE)}"


def test_there_are_models_to_check():
    assert len(MODELS) >= 2


def test_no_float_in_money_code():
    money_code = [SRC / "money.py", SRC / "fees.py", *SRC.glob("ledger/*.py")]
    money_code += [*SRC.glob("accounts/*.py"), *SRC.glob("gateway/*.py")]
    money_code += [*SRC.glob("wallet/*.py")]
    for path in money_code:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.Name) and node.id == "float"), (
                f"float in {path}:{node.lineno}"
            )
            assert not (isinstance(node, ast.Constant) and isinstance(node.value, float)), (
                f"{path}:{node.lineno}"
            )
