"""The boards' pages: transfer matrices, entry pages, flip pages (also through harness.report), and the
built site in a real browser at 1280 x 800 (headless Chromium, skipped when absent)."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from board_runs import board_of, build, make_rows, make_run, with_groups
from harness.report import main as report_main
from harness.results.intervals import cluster_bootstrap

TOKENS = ["<s>", "Ivan", "'s", " kettle", " is", " red", ".", " zx", " qq", " Is", " it", " red", "?", " Answer", ":"]


def picture(k="4"):
    """A hand-written picture record (harness.pictures writes these for flipped items)."""
    n = len(TOKENS)
    return {"prompt": "adversarial", "tokens": TOKENS, "needle_span": [3, 6], "adversarial_span": [7, 9],
            "kept": {k: [round(i / (n - 1), 3) for i in range(n)]},
            "selection": {"k": int(k), "layer": 2, "head": 0, "block_q": 8, "block_k": 8,
                          "blocks": [[1, 0], [1, 1]]}}


@pytest.fixture
def site_runs(tmp_path):
    """An attacked board (stream, oracle; item 0 of stream holds a picture), a natural board and a transfer file."""
    runs = tmp_path / "runs"
    stream_rows = with_groups(make_rows(12, {2: 8, 4: 6, 8: 2}, natural={4: 1}), 3)
    stream_rows[0]["picture"] = picture()
    stream_rows[0]["attribution"] = {"adversarial": {"layers": [2, 3], "4": {"dropped_mass": [0.4, 0.7], "needle_kept": [0.5, 0.0]}}}
    stream = make_run(runs, "stream", stream_rows)
    # long settings (as minference's five) must wrap, not widen the page past 1280 px
    make_run(runs, "oracle", with_groups(make_rows(12, {2: 3, 4: 1, 8: 0}), 3), method="oracle",
             method_options={"last_q": 64, "recent_diagonals": 100, "sink_columns": 30, "slash_size": 6096,
                             "vertical_size": 1000})
    make_run(runs, "natural", make_rows(12, {2: 2, 4: 1, 8: 0}), attack="none")
    lines = []
    for i in range(12):
        for target, flipped in (("full", i < 2), ("oracle", i < 4), ("stream", i < 6)):
            lines.append({"item_id": f"item-{i:03d}", "source": {"method": "stream", "settings": {}, "density": 0.1},
                          "target": {"method": target, "settings": {}, "density": 0.1},
                          "confident": i != 11, "outcome": ("strict" if i % 2 else "breakdown") if flipped else "kept",
                          "scores": None})
    (stream / "transfer.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return runs


def test_transfer_matrix_counts_confident_flips_with_cluster_intervals(site_runs, tmp_path, capsys):
    status, err = build([site_runs, "--out", tmp_path / "out"], capsys)
    assert status == 0, err
    board = next(b for b in board_of(tmp_path / "out")["boards"] if b["attack"] == "random")
    transfer = board["transfer"]
    assert transfer["sources"] == ["stream"] and transfer["targets"] == ["full", "oracle", "stream"]
    groups = [f"g{i // 3}" for i in range(11)]  # item 11 is not confident: not counted
    for target, count in (("full", 2), ("oracle", 4), ("stream", 6)):
        cell = transfer["cells"]["stream"][target]
        interval = cluster_bootstrap([i < count for i in range(11)], groups)
        assert (cell["flips"], cell["n"], cell["low"], cell["high"]) == (count, 11, interval.low, interval.high)
    assert board["plots"]["transfer"] == "plots/seed4-random_transfer.png"
    assert (tmp_path / "out" / board["plots"]["transfer"]).read_bytes().startswith(b"\x89PNG")
    page = (tmp_path / "out" / "index.html").read_text()
    assert '<table class="transfer">' in page and "6/11" in page
    natural = next(b for b in board_of(tmp_path / "out")["boards"] if b["natural"])
    assert natural["transfer"] is None


def test_a_null_attacks_transfer_is_a_source_of_its_own(site_runs, tmp_path, capsys):
    """The filler null's insertions, re-scored under every method, form their own row of the
    matrix: never pooled with random search's tokens against the same method."""
    filler = make_run(site_runs, "filler", with_groups(make_rows(12, {2: 2, 4: 2, 8: 0}), 3), attack="filler")
    lines = [{"item_id": f"item-{i:03d}", "source": {"method": "stream", "settings": {}, "density": 0.1},
              "target": {"method": "oracle", "settings": {}, "density": 0.1}, "confident": True,
              "outcome": "strict" if i < 1 else "kept", "scores": None} for i in range(12)]
    (filler / "transfer.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert build([site_runs, "--out", tmp_path / "out"], capsys)[0] == 0
    transfer = next(b for b in board_of(tmp_path / "out")["boards"] if b["attack"] == "random")["transfer"]
    assert transfer["sources"] == ["stream", "stream + filler (null)"]
    assert transfer["cells"]["stream"]["oracle"]["flips"] == 4  # random search's own, unchanged
    assert (transfer["cells"]["stream + filler (null)"]["oracle"]["flips"],
            transfer["cells"]["stream + filler (null)"]["oracle"]["n"]) == (1, 12)


@pytest.mark.parametrize("line,words", [
    ("{oops", "line 1 is not valid JSON"),
    ('{"item_id": "x", "source": {"method": "s"}, "target": {"method": "t"}, "confident": 1, "outcome": null}',
     "confident"),
    ('{"item_id": "x", "source": {"method": "s"}, "target": {"method": "t"}, "confident": true, "outcome": "x"}',
     "outcome"),
    ('{"item_id": "x", "source": 3, "target": {"method": "t"}, "confident": true, "outcome": null}', "source"),
])
def test_a_malformed_transfer_file_is_one_line_and_exit_2(site_runs, tmp_path, capsys, line, words):
    (site_runs / "stream" / "transfer.jsonl").write_text(line + "\n")
    status, err = build([site_runs, "--out", tmp_path / "out"], capsys)
    assert status == 2 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("leaderboard: error:") and "transfer.jsonl" in last and words in last


def test_entry_pages_hold_what_the_table_leaves_out_and_link_flip_pages(site_runs, tmp_path, capsys):
    assert build([site_runs, "--out", tmp_path / "out"], capsys)[0] == 0
    site = board_of(tmp_path / "out")
    stream = next(e for e in site["entries"] if e["method"] == "stream" and e["attack"] == "random")
    page = (tmp_path / "out" / stream["page"]).read_text()
    at = next(d for d in stream["densities"] if d["density"] == 0.1)["adversarial"]
    assert f"Wilson [{at['ci_low']:.3f}, {at['ci_high']:.3f}]" in page  # the Wilson interval lives here
    assert "yes-&gt;no 6/12" in page and "4 contexts" in page and str(site_runs / "stream") in page
    assert "python -m harness.run --attack random --k-attack 4 --k-sweep 2,4,8 --method stream" in page
    flip = next(f for f in stream["flips"] if f["item_id"] == "item-000" and f["density"] == 0.1)
    assert flip["page"] == "flips/seed4-random-smollm2-135m-stream-b8_8_dense_2_ctx_256/item-000-seed0.html"
    assert f'href="../{flip["page"]}"' in page
    others = [f for f in stream["flips"] if f["item_id"] != "item-000"]
    assert others and all(f["page"] is None for f in others)  # no picture: no page
    flip_page = (tmp_path / "out" / flip["page"]).read_text()
    strip = flip_page.split('<div class="tokens"')[1].split("</div>")[0]
    assert strip.count('<span class="tok') == len(TOKENS)
    assert strip.count("tok needle") == 3 and strip.count("tok adv") == 2
    assert "layer 3: 0.700 of the attention mass dropped" in flip_page
    # P(yes) / P(no) of the gold-yes item under full attention (right) and k = 4 (flipped)
    assert '<td>full</td><td class="num">0.800</td><td class="num">0.200</td>' in flip_page


def test_harness_report_writes_the_same_flip_page_and_refuses_rows_without_one(site_runs, tmp_path, capsys):
    assert build([site_runs, "--out", tmp_path / "out"], capsys)[0] == 0
    built = (tmp_path / "out" / "flips/seed4-random-smollm2-135m-stream-b8_8_dense_2_ctx_256/item-000-seed0.html")
    run = site_runs / "stream"
    assert report_main([str(run), "--item", "item-000", "--html", "--out", str(tmp_path / "flip.html")]) == 0
    mine = (tmp_path / "flip.html").read_text()
    back = '<p><a href="../../entries/seed4-random-smollm2-135m-stream-b8_8_dense_2_ctx_256.html">← entry</a></p>'
    assert built.read_text().replace(back, "") == mine
    capsys.readouterr()
    assert report_main([str(run), "--item", "item-003", "--html"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "item-003" in err[0] and "no picture" in err[0]
    assert "items with a picture: item-000" in err[0]  # the user learns an id that works
    assert report_main([str(run), "--item", "nope", "--html"]) == 2
    err = capsys.readouterr().err
    assert "no item 'nope'" in err and "did you mean" not in err and "items with a picture: item-000" in err
    assert report_main([str(run), "--item", "item-0000", "--html"]) == 2
    assert "no item 'item-0000'; did you mean 'item-000'?" in capsys.readouterr().err
    assert report_main([str(run)]) == 0  # without --item: the run's summary table (harness.results.report)
    assert capsys.readouterr().out.startswith(f"Run `{run}`: model `smollm2-135m`")


# ---------------------------------------------------------------- the pages in a real browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _browser_or_skip(profile_dir):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(f"headless browser test needs {CHROMIUM} and {CHROMEDRIVER} "
                    "(apt-get install chromium chromium-driver)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("headless browser test needs selenium (pip install selenium)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", f"--user-data-dir={profile_dir}", "--window-size=1280,800"):
        options.add_argument(flag)
    # An explicit driver path: selenium-manager must never try to download a driver.
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_window_size(1280, 800)
    return driver


def wide_transfer_lines(n_targets=19):
    """A source re-scored under 19 targets with long settings, as a zoo board writes them."""
    settings = {"compress": "context", "kernel_size": 5, "slash_size": 6096, "vertical_size": 1000}
    return [{"item_id": f"item-{i:03d}", "source": {"method": "stream", "settings": {}, "density": 0.1},
             "target": {"method": f"method-{j:02d}", "settings": settings, "density": 0.1}, "confident": True,
             "outcome": "strict" if (i + j) % 3 == 0 else "kept", "scores": None}
            for i in range(12) for j in range(n_targets)]


def test_short_labels_drop_settings_unless_two_of_one_method_are_listed(site_runs, tmp_path, capsys):
    lines = [{"item_id": "item-000", "source": {"method": "stream", "settings": {}, "density": 0.1},
              "target": {"method": m, "settings": st, "density": 0.1}, "confident": True, "outcome": "kept",
              "scores": None}
             for m, st in (("h2o", {"compress": "context"}), ("snapkv", {"window_size": 64}),
                           ("snapkv", {"window_size": 8}), ("full", {}))]
    (site_runs / "stream" / "transfer.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert build([site_runs, "--out", tmp_path / "out"], capsys)[0] == 0
    transfer = next(b for b in board_of(tmp_path / "out")["boards"] if b["attack"] == "random")["transfer"]
    assert transfer["short"] == {"stream": "stream", "h2o (compress=context)": "h2o", "full": "full",
                                 "snapkv (window_size=64)": "snapkv (window_size=64)",
                                 "snapkv (window_size=8)": "snapkv (window_size=8)"}
    page = (tmp_path / "out" / "index.html").read_text()
    assert '<th title="h2o (compress=context)">h2o</th>' in page


def test_site_in_headless_chromium_at_1280(site_runs, tmp_path, capsys):
    make_run(site_runs, "window", with_groups(make_rows(12, {2: 10, 4: 9, 8: 4}), 3), method="window")
    make_run(site_runs, "filler", with_groups(make_rows(12, {2: 2, 4: 2, 8: 0}), 3), attack="filler")
    with open(site_runs / "stream" / "transfer.jsonl", "a") as fh:  # a zoo-wide matrix must not widen the page
        fh.write("".join(json.dumps(line) + "\n" for line in wide_transfer_lines()))
    assert build([site_runs, "--out", tmp_path / "out"], capsys)[0] == 0
    site = board_of(tmp_path / "out")
    driver = _browser_or_skip(tmp_path / "profile")
    try:
        from selenium.webdriver.common.by import By

        driver.get((tmp_path / "out" / "index.html").as_uri())
        width = driver.execute_script("return [document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the document scrolls sideways: {width}"
        sections = driver.find_elements(By.CSS_SELECTOR, "section.board")
        assert [s.get_attribute("id") for s in sections] == [f"board-{b['slug']}" for b in site["boards"]]
        images = driver.find_elements(By.CSS_SELECTOR, "section.board img")
        expected = [c["path"] for b in site["boards"] for c in b["plots"]["curves"]]
        expected += [b["plots"]["transfer"] for b in site["boards"] if b["plots"]["transfer"]]
        assert sorted(i.get_attribute("src").split("/out/")[1] for i in images) == sorted(expected)
        assert all(driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", i)
                   for i in images)

        board = next(b for b in site["boards"] if b["attack"] == "random")
        ranked = [c["slug"] for c in next(t for t in board["tables"] if t["density"] == 0.1)["ranked"]]
        table = driver.find_element(By.CSS_SELECTOR, f"#board-{board['slug']} table.board[data-density='0.1']")

        def order():
            return [tr.get_attribute("data-entry") for tr in table.find_elements(By.CSS_SELECTOR, "tbody:first-of-type tr")]

        def header(name):
            return next(th for th in table.find_elements(By.CSS_SELECTOR, "thead th")
                        if th.text.replace("↕", "").replace("▲", "").replace("▼", "").strip() == name)

        assert order() == ranked and len(ranked) == 3
        header("Flip rate [95% CI]").click()
        header("Flip rate [95% CI]").click()  # most flipped first
        assert order() == list(reversed(ranked))
        assert header("Flip rate [95% CI]").get_attribute("aria-sort") == "descending"
        header("Rank").click()
        assert order() == ranked
        refs = table.find_elements(By.CSS_SELECTOR, "tbody.refs tr[data-entry]")
        assert [r.get_attribute("data-entry") for r in refs] == [c["slug"] for c in next(
            t for t in board["tables"] if t["density"] == 0.1)["references"] if c["comparable"]]

        shot = tmp_path / "board.png"
        assert driver.save_screenshot(str(shot))
        assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        shutil.copy(shot, os.environ.get("FLIPBENCH_SCREENSHOT", "/tmp/board.png"))

        table.find_element(By.LINK_TEXT, "stream").click()
        assert driver.find_element(By.TAG_NAME, "h1").text == "smollm2-135m · stream"
        assert driver.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        driver.find_element(By.CSS_SELECTOR, "ul.flips a").click()
        tokens = driver.find_elements(By.CSS_SELECTOR, ".tokens span.tok")
        assert [t.get_attribute("textContent") for t in tokens] == TOKENS
        assert driver.find_element(By.CSS_SELECTOR, "svg.selection").is_displayed()
    finally:
        driver.quit()
