"""The sample sets' sources: the emoji come from an npm package installed into the cache on first use."""

import os
import stat
import subprocess
import sys
import textwrap
import time

import pytest

FAKE_NPM = """#!/bin/sh
# npm install --no-audit --no-fund --prefix PREFIX PACKAGE@VERSION, slowly: the package's index file
# lands first and its images a second later, as a real install's files land one by one.
echo "$$" >> "{calls}"
while [ "$1" != "--prefix" ]; do shift; done
pkg="$2/node_modules/emoji-datasource-google"
mkdir -p "$pkg/img/google/64"
printf '[{{"has_img_google": true, "image": "1f600.png", "category": "Smileys", "subcategory": "face"}}]' > "$pkg/emoji.json"
sleep 1
printf 'png' > "$pkg/img/google/64/1f600.png"
"""

ASK = textwrap.dedent("""
    from imgsearch.indexer.inputs.samples import emoji_records
    print(all(r["file"].is_file() for r in emoji_records()))
""")


def test_two_first_uses_at_once_install_once_and_both_see_the_whole_package(tmp_path):
    """Two processes asking for the emoji in an empty cache (two test workers, two users' first runs) never
    read a half-installed package: one installs, the other waits for it and finds it whole."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "npm-calls"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(FAKE_NPM.format(calls=calls))
    npm.chmod(npm.stat().st_mode | stat.S_IXUSR)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
           "IMGSEARCH_CACHE": str(tmp_path / "cache")}
    env.pop("IMGSEARCH_EMOJI_DIR", None)

    first = subprocess.Popen([sys.executable, "-c", ASK], env=env, stdout=subprocess.PIPE, text=True)
    while not calls.exists():  # the first has started installing
        assert first.poll() is None, "the first process ended before installing"
        time.sleep(0.01)
    second = subprocess.run([sys.executable, "-c", ASK], env=env, capture_output=True, text=True, timeout=60)
    first_out, _ = first.communicate(timeout=60)

    assert (first_out.strip(), second.stdout.strip()) == ("True", "True"), second.stderr
    assert len(calls.read_text().split()) == 1
    assert not [p.name for p in (tmp_path / "cache" / "npm").iterdir() if p.name.startswith(".install-")]


@pytest.mark.parametrize("name, limit", [("photos", 1), ("photos", 2), ("photos", None), ("digits", 3)])
def test_the_sample_command_says_how_many_images_of_which_sample(tmp_path, name, limit):
    """Not "wrote 8 photos images" (issue 32): the count's noun agrees with it, the sample is named apart."""
    from click.testing import CliRunner

    from imgsearch.web.cli import main

    dest = tmp_path / name
    r = CliRunner().invoke(main, ["sample", name, str(dest), *(["--limit", str(limit)] if limit else [])])
    assert r.exit_code == 0, r.output
    n = sum(1 for p in dest.rglob("*") if p.is_file() and p.name != ".imgsearch-output")
    noun = "image" if n == 1 else "images"
    assert r.output == f"wrote {n} {noun} of the {name} sample to {dest}\n"
