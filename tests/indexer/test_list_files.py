"""Lists of images as users save them: a BOM from Excel, other encodings, broken Parquet files,
columns of the wrong type. Good lists read as they should; bad ones fail with a message that
names the list file (and the line or row), never with a traceback from a library."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from imgsearch.indexer.inputs.sources import ListFileError, iter_image_files

EXE = Path(sys.executable).parent / "imgsearch"


@pytest.fixture
def images(tmp_path) -> list[Path]:
    folder = tmp_path / "pics"
    folder.mkdir()
    paths = []
    for i, colour in enumerate(["red", "green", "blue"]):
        paths.append(folder / f"{i}.png")
        Image.new("RGB", (8, 8), colour).save(paths[-1])
    return paths


def listed(list_file) -> list[tuple[str, str]]:
    return [(Path(f.path).name, f.label) for f in iter_image_files([list_file])]


def test_csv_saved_by_excel_as_csv_utf8_with_a_bom(tmp_path, images):
    lst = tmp_path / "list.csv"
    lst.write_bytes("\ufeffpath,label\r\n".encode() + b"".join(f"pics/{p.name},caf\u00e9\r\n".encode() for p in images))
    assert listed(lst) == [(p.name, "caf\u00e9") for p in images]


def test_text_list_with_a_bom_and_padded_csv_headers(tmp_path, images):
    txt = tmp_path / "list.txt"
    txt.write_bytes(b"\xef\xbb\xbf" + "\n".join(f"pics/{p.name}" for p in images).encode())
    assert [name for name, _ in listed(txt)] == [p.name for p in images]
    csv_file = tmp_path / "padded.csv"
    csv_file.write_text(" path , label \n" + "".join(f"pics/{p.name},x\n" for p in images))
    assert listed(csv_file) == [(p.name, "x") for p in images]


@pytest.mark.parametrize("suffix", [".txt", ".csv"])
def test_a_list_in_another_encoding_names_the_file_and_line(tmp_path, images, suffix):
    lst = tmp_path / f"latin1{suffix}"
    header = "path\n" if suffix == ".csv" else ""
    lst.write_bytes((header + f"pics/{images[0].name}\npics/caf\u00e9.png\n").encode("latin-1"))
    with pytest.raises(ListFileError) as err:
        listed(lst)
    line = 3 if suffix == ".csv" else 2
    assert str(lst) in str(err.value) and f"line {line}" in str(err.value) and "UTF-8" in str(err.value)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_broken_parquet_list_names_the_file(tmp_path, images, damage):
    lst = tmp_path / "list.parquet"
    pq.write_table(pa.table({"path": [str(p) for p in images]}), lst)
    data = lst.read_bytes()
    lst.write_bytes({"garbage": b"this is not parquet" * 10, "truncated": data[: len(data) // 2], "empty": b""}[damage])
    with pytest.raises(ListFileError) as err:
        listed(lst)
    assert str(lst) in str(err.value) and "Parquet" in str(err.value)


@pytest.mark.parametrize("table, message", [
    (pa.table({"path": [1, 2, 3]}), "'path' column must hold strings, it holds int64"),
    (pa.table({"path": ["a.png"], "label": [1.5]}), "'label' column must hold strings or integers, it holds double"),
    (pa.table({"path": ["a.png"], "label": [[1, 2]]}), "'label' column must hold strings or integers"),
    (pa.table({"file": ["a.png"]}), "needs a 'path' column (it has: file)"),
])
def test_parquet_columns_of_the_wrong_type_name_the_file(tmp_path, table, message):
    lst = tmp_path / "list.parquet"
    pq.write_table(table, lst)
    with pytest.raises(ListFileError) as err:
        listed(lst)
    assert str(lst) in str(err.value) and message in str(err.value)


def test_integer_labels_in_a_parquet_list_are_kept_as_text(tmp_path, images):
    lst = tmp_path / "digits.parquet"
    pq.write_table(pa.table({"path": [str(p) for p in images], "label": pa.array([7, None, 0], pa.int16())}), lst)
    assert listed(lst) == [(images[0].name, "7"), (images[1].name, "pics"), (images[2].name, "0")]


def test_csv_without_a_path_column_names_the_file(tmp_path):
    lst = tmp_path / "list.csv"
    lst.write_text("file,label\na.png,x\n")
    with pytest.raises(ListFileError) as err:
        listed(lst)
    assert str(lst) in str(err.value) and "'file', 'label'" in str(err.value)


def test_the_cli_reports_a_bad_list_in_one_line(tmp_path):
    lst = tmp_path / "list.parquet"
    lst.write_bytes(b"not parquet")
    run = subprocess.run([str(EXE), "index", str(lst), "--index", str(tmp_path / "idx"), "--no-progress"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stderr
    assert "Traceback" not in run.stderr and str(lst) in run.stderr
