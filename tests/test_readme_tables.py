"""The README's bench tables are what bench/readme_tables.py renders from the JSON each
one names (so nobody edits a figure by hand, and a stale table fails here)."""
from pathlib import Path

from bench import readme_tables

ROOT = Path(__file__).resolve().parents[1]


def test_readme_bench_blocks_are_generated_from_their_json():
    text = (ROOT / "README.md").read_text()
    found = readme_tables.blocks(text)
    assert {name for name, _, _ in found} == {"kernels", "gemm", "train", "busy", "gpu", "fashion"}
    for name, json_path, block in found:
        assert (ROOT / json_path).is_file(), json_path
        assert block == readme_tables.render(name, json_path), f"README's {name} table is stale: " \
            f"run python -m bench.readme_tables {json_path}"


def test_a_train_suite_json_leaves_the_kernel_tables_alone(tmp_path, monkeypatch):
    """`python -m bench --suite train` writes no kernel or GEMM results: its JSON re-renders
    the train table only."""
    import json
    text = (ROOT / "README.md").read_text()
    paths = {name: path for name, path, _ in readme_tables.blocks(text)}
    results = json.loads((ROOT / paths["train"]).read_text())
    results["kernels"] = None
    results.pop("gemm", None)
    monkeypatch.setattr(readme_tables, "ROOT", str(tmp_path))
    (tmp_path / "train_only.json").write_text(json.dumps(results))
    assert readme_tables.kinds("train_only.json") == {"train"}
    new = readme_tables.update(text, "train_only.json")
    found = {name: path for name, path, _ in readme_tables.blocks(new)}
    assert found["train"] == "train_only.json"
    assert found["kernels"] == paths["kernels"] and found["gemm"] == paths["gemm"]
