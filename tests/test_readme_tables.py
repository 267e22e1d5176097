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
