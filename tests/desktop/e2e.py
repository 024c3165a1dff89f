#!/usr/bin/env python3
"""End-to-end test of the real desktop app, driven through WebDriver (tauri-driver +
WebKitWebDriver) under Xvfb, against a real `ferry` CLI node on 127.0.0.1.

Discovery is off on both sides (host network namespace): the CLI connects to the app by address.
Steps: the app shows the CLI node; the CLI sends a folder; the test accepts in the app's prompt;
the files arrive verified; pause and resume from the app; the app sends a file back; pairing; the
library browser (a location of pictures and 10,000 notes: real thumbnails over ferry://, a Range
request, the virtualised grid, a live change); a member's location synced into the app; its
thumbnails and files through ferry:// (Range, Save to this device), offline and back; 200 % zoom.
Screenshots of the window are saved in tests/desktop/shots/ (always for the main views, and when
a step fails). Prints `N passed, N failed` last.

Usage (from the repo root, under a display): python3 tests/desktop/e2e.py APP_BINARY FERRY_BINARY
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select
from selenium.webdriver.common.options import ArgOptions

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "desktop" / "shots"
APP_PORT = 47611


class Cli:
    """A `ferry --json node` process whose event lines are collected."""

    def __init__(self, binary, data_dir, connect, dest):
        self.lines = []
        self.proc = subprocess.Popen(
            [binary, "--no-discovery", "--listen", "127.0.0.1:0", "--name", "cli-node", "--data-dir", data_dir,
             "--dest", dest, "--yes", "--connect", connect, "--json", "node"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                pass

    def wait_for(self, pred, timeout, what):
        deadline = time.time() + timeout
        seen = 0
        while time.time() < deadline:
            for l in self.lines[seen:]:
                if pred(l):
                    return l
            seen = 0
            time.sleep(0.1)
        raise AssertionError(f"CLI never saw {what}")

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def send(binary, data_dir, to, paths):
    """`ferry send` in the background; returns the process (JSON lines on stdout)."""
    return subprocess.Popen(
        [binary, "--no-discovery", "--listen", "127.0.0.1:0", "--name", "cli-sender", "--data-dir", data_dir,
         "--json", "send", to, *paths], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def tone(path, secs):
    """A real WAV file: a 440 Hz tone, 16-bit mono at 22,050 Hz."""
    import math
    import struct
    import wave
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(b"".join(struct.pack("<h", int(8000 * math.sin(i * 2 * math.pi * 440 / 22050)))
                               for i in range(22050 * secs)))


def tree(root):
    out = {}
    for p in sorted(Path(root).rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = p.read_bytes() if p.is_file() else None
    return out


def main():
    app, ferry = sys.argv[1], sys.argv[2]
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="ferry-e2e-"))
    results = []
    procs = []

    # The app gets its settings from the environment tauri-driver starts it with; the CLI
    # processes get none of them.
    env = dict(os.environ, FERRY_DATA_DIR=str(tmp / "app-data"), FERRY_NO_DISCOVERY="1",
               FERRY_LISTEN=f"127.0.0.1:{APP_PORT}", FERRY_DEST=str(tmp / "app-down"), FERRY_NAME="desktop-e2e")
    driver_proc = subprocess.Popen(
        ["tauri-driver", "--port", "4444", "--native-port", "4445", "--native-driver", "/usr/bin/WebKitWebDriver"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    procs.append(driver_proc)
    time.sleep(1.5)
    opts = ArgOptions()
    opts.set_capability("browserName", "wry")
    opts.set_capability("tauri:options", {"application": app})
    driver = webdriver.Remote(command_executor="http://127.0.0.1:4444", options=opts)
    driver.implicitly_wait(0)

    def find(css, timeout=15, text=None, exact=False):
        """The first element matching `css` whose textContent contains (or is) `text`.
        textContent, not WebDriver's rendered text: that drops ellipsized words."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for el in driver.find_elements(By.CSS_SELECTOR, css):
                try:
                    content = (el.get_attribute("textContent") or "").strip()
                    if text is None or (content == text if exact else text in content):
                        return el
                except Exception:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"no element {css!r}" + (f" with text {text!r}" if text else ""))

    def click_button(label, timeout=15, within="body"):
        find(f"{within} button", timeout, text=label, exact=True).click()

    # Finished transfers stay listed, so a state is looked for in the row of the transfer in
    # question: "Done · verified" anywhere was found at once in the row of an earlier one.
    def row(transfer_id):
        return f'li.transfer[data-transfer="{transfer_id}"]'

    def listed():
        return {el.get_attribute("data-transfer") for el in driver.find_elements(By.CSS_SELECTOR, "li.transfer")}

    def new_row(before, timeout=20):
        """The id of the one transfer listed now that was not in `before`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            new = listed() - before
            assert len(new) <= 1, f"several new transfers: {new}"
            if new:
                return new.pop()
            time.sleep(0.1)
        raise AssertionError("no new transfer listed")

    def step(name, f):
        t0 = time.time()
        try:
            f()
            results.append((name, True))
            print(f"ok   {name} ({time.time() - t0:.1f}s)", flush=True)
        except Exception:
            results.append((name, False))
            shot = SHOTS / f"FAILED-{name.replace(' ', '_')}.png"
            try:
                driver.save_screenshot(str(shot))
            except Exception:
                pass
            print(f"FAIL {name}: screenshot {shot}\n{traceback.format_exc()}", flush=True)

    cli = Cli(ferry, str(tmp / "cli-data"), f"127.0.0.1:{APP_PORT}", str(tmp / "cli-down"))
    procs.append(cli.proc)

    src = tmp / "src" / "vacation ✓"
    (src / "empty").mkdir(parents=True)
    (src / "notes.txt").write_text("hello from the CLI\n")
    (src / "photo.bin").write_bytes(os.urandom(3_000_000))

    def details_picture(width, what, timeout=15):
        """Waits until the details pane shows the original picture, `width` pixels wide."""
        deadline = time.time() + timeout
        while not driver.execute_script("const i = document.querySelector('.details img.preview');"
                                        "return !!i && i.complete && i.naturalWidth === arguments[0]", width):
            assert time.time() < deadline, what
            time.sleep(0.2)

    def decoded_thumbnails(n, timeout=60):
        """Waits until the grid shows `n` thumbnails from ferry://, each decoded by the webview;
        returns [complete, naturalWidth, src] of each."""
        deadline = time.time() + timeout
        while True:
            sizes = driver.execute_script(
                "return [...document.querySelectorAll('[role=grid] img')].map(i => [i.complete, i.naturalWidth, i.src])")
            if len(sizes) == n and all(c and w > 0 for c, w, _ in sizes):
                break
            assert time.time() < deadline, f"thumbnails: {sizes}"
            time.sleep(0.3)
        assert all(src.startswith("ferry://localhost/thumb/") for _, _, src in sizes), sizes
        return sizes

    saved_download = [False]
    # The CLI node running now (remote_media restarts it).
    current_cli = [cli]

    def sees_cli():
        find("[data-peer]", 20, text="cli-node")
        driver.save_screenshot(str(SHOTS / "1-peers.png"))

    def accept_folder():
        before = listed()
        s = send(ferry, str(tmp / "sender-data"), f"127.0.0.1:{APP_PORT}", [str(src)])
        procs.append(s)
        dialog = find("[role=dialog]", 20)
        what = dialog.get_attribute("textContent")
        assert "cli-sender" in what and "2 files" in what, what
        driver.save_screenshot(str(SHOTS / "2-prompt.png"))
        click_button("Accept", within="[role=dialog]")
        folder = row(new_row(before))
        find(f"{folder} .transfer-state", 30, text="Done · verified")
        assert s.wait(30) == 0, "ferry send did not finish"
        got = tree(tmp / "app-down" / "vacation ✓")
        assert got == tree(src), "received folder differs"
        driver.save_screenshot(str(SHOTS / "3-done.png"))

    def pause_and_resume():
        big = tmp / "src" / "big.bin"
        with open(big, "wb") as f:
            f.truncate(1_500_000_000)  # sparse: fast to make, real bytes on the wire
        before = listed()
        s = send(ferry, str(tmp / "sender-data"), f"127.0.0.1:{APP_PORT}", [str(big)])
        procs.append(s)
        find("[role=dialog]", 20)
        click_button("Accept", within="[role=dialog]")
        mine = row(new_row(before))
        find(f"{mine} .transfer-state", 20, text="Receiving")
        click_button("Pause", within=mine)
        find(f"{mine} .transfer-state", 10, text="Paused by you")
        driver.save_screenshot(str(SHOTS / "4-paused.png"))
        figures = lambda: find(f"{mine} .transfer-figures", 5).get_attribute("textContent")
        time.sleep(1.0)  # what was already in flight when the pause landed still arrives
        before = figures()
        time.sleep(1.5)
        assert figures().split("%")[0] == before.split("%")[0], "progress moved while paused"
        click_button("Resume", within=mine)
        find(f"{mine} .transfer-state", 60, text="Done · verified")
        assert s.wait(60) == 0
        assert (tmp / "app-down" / "big.bin").stat().st_size == 1_500_000_000

    def send_back():
        back = tmp / "from-app.txt"
        back.write_text("sent by the desktop app\n")
        cli_id = cli.wait_for(lambda l: l.get("type") == "node_started", 5, "node_started")["id"]
        err = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('send_paths', {peer: arguments[0], paths: [arguments[1]]})"
            ".then(() => done(null), (e) => done(String(e)));", cli_id, str(back))
        assert err is None, err
        got = cli.wait_for(lambda l: l.get("type") == "transfer" and l["transfer"]["state"] == "done", 30,
                           "the file from the app")
        assert (tmp / "cli-down" / "from-app.txt").read_text() == "sent by the desktop app\n"
        # The same transfer id on both sides: the app's row of this send says it is done.
        find(f"{row(got['transfer']['id'])} .transfer-state", 10, text="Done · verified")
        driver.save_screenshot(str(SHOTS / "5-sent-back.png"))

    def pair_cli():
        find("#new-library").send_keys("E2E Family")
        click_button("Create")
        find("[data-library]", 10, text="E2E Family")
        find('button[aria-label="Pair with cli-node"]').click()
        click_button("Pair", within="[role=dialog]")
        asked = cli.wait_for(lambda l: l.get("type") == "pairing" and l["pairing"]["state"] == "confirm", 20,
                             "a pairing request")
        shown = find("[role=dialog] [data-code]", 10).get_attribute("data-code")
        assert shown == asked["pairing"]["code"], f"app shows {shown}, CLI shows {asked['pairing']['code']}"
        assert asked["pairing"]["library_name"] == "E2E Family" and asked["pairing"]["peer_name"] == "desktop-e2e"
        driver.save_screenshot(str(SHOTS / "7-pairing-code.png"))
        click_button("Codes match", within="[role=dialog]")
        cli.send("y")
        find("[role=dialog]", 20, text="cli-node is now a member")
        click_button("Close", within="[role=dialog]")
        cli_id = cli.wait_for(lambda l: l.get("type") == "node_started", 5, "node_started")["id"]
        member = find(f'[data-member="{cli_id}"]', 10, text="online")
        assert "cli-node" in member.get_attribute("textContent")
        cli.wait_for(lambda l: l.get("type") == "library" and len(l["library"]["members"]) == 2
                     and not l["library"]["removed"], 10, "the library")
        driver.save_screenshot(str(SHOTS / "8-library.png"))
        # Removing it: the CLI node is told at once, and refuses the library from then on.
        find('button[aria-label="Remove cli-node"]').click()
        find(f'[data-member="{cli_id}"]', 10, text="removed")
        cli.wait_for(lambda l: l.get("type") == "library" and l["library"]["removed"], 15, "its removal")

    def browse_library():
        # A real folder: pictures made by ImageMagick (JPEG, PNG, GIF) and 10,000 small notes.
        photos = tmp / "photos"
        (photos / "notes").mkdir(parents=True)
        for i, (fmt, spec) in enumerate([("jpg", "plasma:orange-navy"), ("jpg", "plasma:green-yellow"),
                                         ("png", "gradient:#2f6bf2-#14b8c4"), ("gif", "plasma:fractal"),
                                         ("jpg", "radial-gradient:white-firebrick")]):
            subprocess.run(["convert", "-size", "1600x1000", spec, str(photos / f"img-{i}.{fmt}")], check=True)
        for i in range(10_000):
            (photos / f"note-{i:05}.txt").write_text(f"note {i}\n")
        # Two files that opening would run: the app must ask first (and the test never says Run).
        (photos / "setup.exe").write_bytes(b"MZ not really a program")
        (photos / "tool").write_text("#!/bin/sh\ntouch ran\n")
        (photos / "tool").chmod(0o755)
        lib = find("[data-library]", 5, text="E2E Family").get_attribute("data-library")
        # The native folder picker is outside the webview (WebDriver cannot drive it): call the
        # command *Add location…* calls with the picked folder.
        err = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('add_location', {library: arguments[0], path: arguments[1]})"
            ".then(() => done(null), (e) => done(String(e)));", lib, str(photos))
        assert err is None, err
        find('button[aria-label="Browse E2E Family"]').click()
        find("[data-location]", 60, text="up to date")
        grid = find("[role=grid]", 5)
        deadline = time.time() + 10
        while grid.get_attribute("data-total") != "10008":
            assert time.time() < deadline, f"the grid lists {grid.get_attribute('data-total')} entries, not 10,008"
            time.sleep(0.2)
        # Real thumbnails, served by ferry://, decoded by the webview.
        sizes = decoded_thumbnails(5)
        assert max(w for _, w, _ in sizes) <= 256, sizes
        tiles = len(driver.find_elements(By.CSS_SELECTOR, "[role=grid] [data-entry]"))
        assert tiles < 200, f"{tiles} tiles in the DOM for 10,008 entries"
        # Details of a picture: its content id is the one the CLI lists from the same library.
        find('[role=grid] button[aria-label="img-0.jpg"]').click()
        cas = find(".details [data-cas]", 10).get_attribute("data-cas")
        listed = subprocess.run([ferry, "--data-dir", str(tmp / "app-data"), "--json", "ls", lib, "photos"], check=True,
                                capture_output=True, text=True).stdout
        entry = next(json.loads(l) for l in listed.splitlines() if '"img-0.jpg"' in l and '"entry"' in l)
        assert cas and cas == entry["entry"]["cas"], (cas, entry)
        details_picture(1600, "the original picture did not load in the details pane", 10)
        driver.save_screenshot(str(SHOTS / "9-library-browser.png"))
        # A Range request from the page: 206 with exactly those bytes (what a video seek does).
        got = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(`ferry://localhost/file/${arguments[0]}/${arguments[1]}`, {headers: {Range: 'bytes=6-9'}})"
            ".then(async (r) => done([r.status, r.headers.get('Content-Range'), [...new Uint8Array(await r.arrayBuffer())]]),"
            " (e) => done(String(e)));", lib, entry["entry"]["id"])
        want = list((photos / "img-0.jpg").read_bytes()[6:10])
        size = (photos / "img-0.jpg").stat().st_size
        assert got == [206, f"bytes 6-9/{size}", want], got
        # How smooth: scroll through the folder for 3 s at a brisk 120 px a frame (7,200 px/s),
        # then 3 s a whole screenful a frame (every tile new each frame), recording frame times
        # and how often a row was still a placeholder (its page not yet fetched); the same loop
        # without scrolling first, for what this display (Xvfb, software rendering) gives at best.
        # Figures for the closing note, not assertions.
        runs = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const g = document.querySelector('[role=grid]');"
            "function run(ms, step) { return new Promise((ok) => { const times = []; let blanks = 0;"
            "  let last = performance.now(); const end = last + ms;"
            "  function tick(now) { times.push(now - last); last = now;"
            "    if (g.querySelector('.placeholder')) blanks++;"
            "    if (step) g.scrollTop = (g.scrollTop + (step < 0 ? g.clientHeight : step)) % (g.scrollHeight - g.clientHeight);"
            "    if (now < end) requestAnimationFrame(tick); else { times.sort((a, b) => a - b);"
            "      ok([times.length, times[times.length >> 1], times[Math.floor(times.length * 0.95)], blanks / times.length]); } }"
            "  requestAnimationFrame(tick); }); }"
            "(async () => done([await run(1000, 0), await run(3000, 120), await run(3000, -1)]))();")
        for (frames, p50, p95, blank), what in zip(runs, ["idle", "120 px/frame", "a screenful/frame"]):
            print(f"     grid of 10,008 entries, {what}: {frames} frames, frame time median {p50:.1f} ms, "
                  f"p95 {p95:.1f} ms, placeholders visible in {blank:.0%} of frames", flush=True)
        # Scrolled to the end: the last note is there, the DOM still small.
        driver.execute_script("const g = document.querySelector('[role=grid]'); g.scrollTop = g.scrollHeight")
        find('[role=grid] button[aria-label="note-09999.txt"]', 10)
        tiles = len(driver.find_elements(By.CSS_SELECTOR, "[role=grid] [data-entry]"))
        assert tiles < 200, f"{tiles} tiles after scrolling"
        # Open on a program asks first, with "Show in folder" as the safe default; Cancel runs
        # nothing. The shell script (execute bit, no extension) is caught by the real command too.
        find('[role=grid] button[aria-label="setup.exe"]', 10).click()
        find(".details-actions button", 10, text="Open", exact=True).click()
        ask = find("[role=alertdialog]", 10)
        assert "Run “setup.exe”?" in ask.text, ask.text
        assert driver.switch_to.active_element.text == "Show in folder"
        driver.save_screenshot(str(SHOTS / "12-run-program.png"))
        find("[role=alertdialog] button", 5, text="Cancel").click()
        assert not driver.find_elements(By.CSS_SELECTOR, "[role=alertdialog]")
        tool = next(json.loads(l)["entry"]["id"] for l in subprocess.run(
            [ferry, "--data-dir", str(tmp / "app-data"), "--json", "ls", lib, "photos"], check=True,
            capture_output=True, text=True).stdout.splitlines() if '"name":"tool"' in l.replace(" ", ""))
        got = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('open_entry', {library: arguments[0], entry: arguments[1],"
            " reveal: false, runProgram: false}).then(done, (e) => done('error: ' + e));", lib, tool)
        assert got == "is_program", got
        assert not (photos / "ran").exists() and not (Path.cwd() / "ran").exists()
        # Live: a picture saved into the folder appears with its thumbnail, no rescan asked.
        driver.execute_script("document.querySelector('[role=grid]').scrollTop = 0")
        subprocess.run(["convert", "-size", "900x1400", "plasma:purple-gold", str(photos / "img-new.jpg")], check=True)
        deadline = time.time() + 20
        while not driver.execute_script(
                "const i = document.querySelector('[role=grid] button[aria-label=\"img-new.jpg\"] img');"
                "return !!i && i.complete && i.naturalWidth > 0"):
            assert time.time() < deadline, "the new picture never showed up with a thumbnail"
            time.sleep(0.2)
        # Loaded is not yet painted (decoding is async): wait for the decode, then a frame.
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all([...document.querySelectorAll('[role=grid] img')].map(i => i.decode()))"
            ".then(() => requestAnimationFrame(() => done(null)), (e) => done(String(e)));")
        driver.save_screenshot(str(SHOTS / "10-library-live.png"))
        assert driver.execute_script(
            "const i = document.querySelector('[role=grid] button[aria-label=\"img-new.jpg\"] img');"
            "const r = i.getBoundingClientRect(), box = i.closest('.tile-thumb').getBoundingClientRect();"
            "return r.top >= box.top - 1 && r.bottom <= box.bottom + 1"), "a tall thumbnail overflows its tile"
        # At 200 % zoom the library view stacks: nothing cut off sideways.
        overflow = overflow_at_200("11-library-zoom-200.png")
        assert overflow <= 1, f"the library view is {overflow}px wider than the window at 200 % zoom"
        click_button("← All")
        card = find("[data-library]", 5, text="E2E Family").get_attribute("textContent")
        # Numbers are grouped by the user's locale (none in CI's C locale).
        assert re.search(r"1 location · 10\D?008 files", card), card

    def sync_with_cli():
        # The CLI node joins a second library and indexes a folder of its own: the app lists
        # that location under the CLI node's name, opens its folders from the synced rows, and
        # shows a file made on the CLI node's disk moments later.
        for back in driver.find_elements(By.XPATH, "//button[contains(., '← All')]"):
            back.click()
        find("#new-library").send_keys("E2E Shared")
        click_button("Create")
        shared_id = find("[data-library]", 10, text="E2E Shared").get_attribute("data-library")
        find('button[aria-label="Pair with cli-node"]').click()
        Select(find("#pair-library", 10)).select_by_value(shared_id)
        click_button("Pair", within="[role=dialog]")
        cli.wait_for(lambda l: l.get("type") == "pairing" and l["pairing"]["state"] == "confirm"
                     and l["pairing"]["library_name"] == "E2E Shared", 20, "the second pairing request")
        find("[role=dialog] [data-code]", 10)
        click_button("Codes match", within="[role=dialog]")
        cli.send("y")
        find("[role=dialog]", 20, text="cli-node is now a member")
        click_button("Close", within="[role=dialog]")
        shared = tmp / "cli-shared"
        (shared / "reports" / "2026").mkdir(parents=True)
        (shared / "reports" / "2026" / "q1.txt").write_text("first quarter\n")
        (shared / "readme.md").write_text("# shared\n")
        lib = find("[data-library]", 5, text="E2E Shared").get_attribute("data-library")
        subprocess.run([ferry, "--data-dir", str(tmp / "cli-data"), "--json", "location", "add", str(shared),
                        "--library", lib], check=True, capture_output=True)
        find('button[aria-label="Browse E2E Shared"]').click()
        group = find('[aria-label="Device cli-node"]', 30)
        assert "online" in group.get_attribute("textContent"), group.get_attribute("textContent")
        find("[data-location]", 30, text="cli-shared").find_element(By.CSS_SELECTOR, ".location-pick").click()
        folder = find('[role=grid] button[aria-label="reports"]', 20)
        ActionChains(driver).double_click(folder).perform()
        ActionChains(driver).double_click(find('[role=grid] button[aria-label="2026"]', 10)).perform()
        find('[role=grid] button[aria-label="q1.txt"]', 10)
        (shared / "reports" / "2026" / "q2.txt").write_text("second quarter\n")
        t0 = time.time()
        find('[role=grid] button[aria-label="q2.txt"]', 15)
        print(f"  a file made on the CLI node listed in the app after {(time.time() - t0) * 1000:.0f} ms")
        # Selecting a remote file shows its details from the synced rows, with no error.
        find('[role=grid] button[aria-label="q2.txt"]').click()
        find(".details .where", 10, text="cli-node: ")
        alerts = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "[role=alert]")]
        assert not alerts, alerts
        driver.save_screenshot(str(SHOTS / "13-synced-location.png"))

    def remote_media():
        # The CLI node's pictures and files through ferry://: thumbnails fetched from it (and
        # copied in the background, a never-opened folder's too), a Range request answered with
        # its exact bytes, the original in the details, *Save to this device*; then the CLI node
        # stops: thumbnails still show, the details say it is offline; it comes back: the
        # original loads again.
        shared = tmp / "cli-shared"
        (shared / "pics" / "more").mkdir(parents=True)
        for i, spec in enumerate(["plasma:orange-navy", "gradient:#2f6bf2-#14b8c4", "plasma:green-yellow"]):
            subprocess.run(["convert", "-size", "1200x800", spec, str(shared / "pics" / f"pic-{i}.jpg")], check=True)
        subprocess.run(["convert", "-size", "800x600", "plasma:fractal", str(shared / "pics" / "more" / "hidden.jpg")],
                       check=True)
        (shared / "pics" / "clip.bin").write_bytes(os.urandom(2_000_000))
        tone(shared / "pics" / "tone.wav", 12)
        find("[data-location]", 10, text="cli-shared").find_element(By.CSS_SELECTOR, ".location-pick").click()
        ActionChains(driver).double_click(find('[role=grid] button[aria-label="pics"]', 30)).perform()
        decoded_thumbnails(3)
        lib = find("[data-browsing]", 5).get_attribute("data-browsing")
        clip = find('[role=grid] button[aria-label="clip.bin"]', 10).get_attribute("data-entry")
        got = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch(`ferry://localhost/file/${arguments[0]}/${arguments[1]}`, {headers: {Range: 'bytes=1000-1999'}})"
            ".then(async (r) => done([r.status, r.headers.get('Content-Range'), [...new Uint8Array(await r.arrayBuffer())]]),"
            " (e) => done(String(e)));", lib, clip)
        want = list((shared / "pics" / "clip.bin").read_bytes()[1000:2000])
        assert got == [206, "bytes 1000-1999/2000000", want], got[:2]
        find('[role=grid] button[aria-label="pic-0.jpg"]').click()
        details_picture(1200, "the member's original did not load in the details pane", 15)
        click_button("Save to this device", within=".details")
        find(".details .saved-note", 20, text="Saved to")
        saved_download[0] = True
        saved = tmp / "app-down" / "pic-0.jpg"
        assert saved.read_bytes() == (shared / "pics" / "pic-0.jpg").read_bytes()
        driver.save_screenshot(str(SHOTS / "17-remote-media.png"))
        # A member's song plays from it, and seeks (the element asks for a range: over loopback
        # HTTP, as WebKitGTK's media backend cannot read a custom scheme).
        find('[role=grid] button[aria-label="tone.wav"]').click()
        find(".details audio.preview", 10)
        got = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "const a = document.querySelector('.details audio.preview');"
            "setTimeout(() => done(['timeout', a.readyState, a.networkState, a.error && a.error.code]), 20000);"
            "a.addEventListener('error', () => done(['error', a.error && a.error.code]), {once: true});"
            "function seek() { const t0 = performance.now();"
            "  a.addEventListener('seeked', () => done([a.currentTime, a.duration, performance.now() - t0]), {once: true});"
            "  a.currentTime = 9; }"
            "if (a.readyState >= 1) seek(); else a.addEventListener('loadedmetadata', seek, {once: true});")
        assert isinstance(got[0], (int, float)) and abs(got[0] - 9) < 0.5 and abs(got[1] - 12) < 0.5, got
        src = driver.execute_script("return document.querySelector('.details audio.preview').src")
        assert re.match(r"http://127\.0\.0\.1:\d+/[0-9a-f]{32}/file/", src), src
        print(f"  a remote song: seek to 0:09 of 0:12 done in {got[2]:.0f} ms")
        # Preview sync: every picture's thumbnail is in the app's store, the unopened one's too.
        listed = subprocess.run([ferry, "--data-dir", str(tmp / "app-data"), "--json", "ls", lib, "cli-shared/pics/more"],
                                check=True, capture_output=True, text=True).stdout
        hidden = next(json.loads(l)["entry"]["cas"] for l in listed.splitlines() if '"hidden.jpg"' in l)
        store = tmp / "app-data" / "thumbnails"
        deadline = time.time() + 30
        while not list(store.glob(f"*/{hidden}.*")):
            assert time.time() < deadline, "the unopened folder's thumbnail was not copied"
            time.sleep(0.3)
        # The CLI node goes away.
        cli.stop()
        group = find('[aria-label="Device cli-node"]', 5)
        deadline = time.time() + 20
        while "offline" not in group.get_attribute("textContent"):
            assert time.time() < deadline, group.get_attribute("textContent")
            time.sleep(0.2)
        find('[role=grid] button[aria-label="pic-1.jpg"]').click()
        find(".details .offline-note", 10, text="cli-node is offline")
        driver.execute_script("document.querySelector('[role=grid]').scrollTop = 0")
        sizes = driver.execute_script(
            "return [...document.querySelectorAll('[role=grid] img')].map(i => [i.complete, i.naturalWidth])")
        assert len(sizes) == 3 and all(c and w > 0 for c, w in sizes), sizes
        driver.save_screenshot(str(SHOTS / "18-remote-offline.png"))
        # It comes back: the original loads again.
        again = Cli(ferry, str(tmp / "cli-data"), f"127.0.0.1:{APP_PORT}", str(tmp / "cli-down"))
        procs.append(again.proc)
        current_cli[0] = again
        deadline = time.time() + 30
        while "online" not in find('[aria-label="Device cli-node"]', 5).get_attribute("textContent"):
            assert time.time() < deadline, "the CLI node did not come back"
            time.sleep(0.2)
        find('[role=grid] button[aria-label="pic-2.jpg"]').click()
        details_picture(1200, "the original did not load once its device was back", 15)
        # It stays up (stopped with the others at the end): the next step sends to it.

    def attached_cli_and_grants():
        # `ferry` run on the app's data dir attaches to the app's node: its send is the app's
        # (listed there, paused and cancelled from the app), its location is indexed by the app.
        # Then grants: the app opens the CLI node's device (a rescan refused until the CLI node
        # grants it), and a grant given in the app lets the CLI node rescan the app's folder.
        for back in driver.find_elements(By.XPATH, "//button[contains(., '← All')]"):
            back.click()
        app_data = str(tmp / "app-data")
        cli_id = cli.wait_for(lambda l: l.get("type") == "node_started", 5, "node_started")["id"]
        big = tmp / "src" / "attached.bin"
        with open(big, "wb") as f:
            f.truncate(3_000_000_000)  # sparse: fast to make, real bytes on the wire
        before = listed()
        t0 = time.time()
        attached = subprocess.Popen([ferry, "--data-dir", app_data, "--json", "send", cli_id, str(big)],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        procs.append(attached)
        mine = row(new_row(before))
        print(f"  an attached `ferry send` listed in the app after {(time.time() - t0) * 1000:.0f} ms")
        find(f"{mine} .transfer-state", 20, text="Sending")
        click_button("Pause", within=mine)
        find(f"{mine} .transfer-state", 10, text="Paused by you")
        driver.save_screenshot(str(SHOTS / "20-attached-send-paused.png"))
        click_button("Cancel", within=mine)
        out, _ = attached.communicate(timeout=30)
        states = [json.loads(l)["transfer"]["state"] for l in out.splitlines() if '"type":"transfer"' in l]
        assert "paused" in states and states[-1] == "cancelled", states
        assert attached.returncode == 1, attached.returncode
        # The receiver saw the app's node, not a second one: the transfer came from its id.
        me = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('snapshot').then((s) => done(s.me.id), (e) => done(String(e)));")
        peers = {l["transfer"]["peer"] for l in current_cli[0].lines
                 if l.get("type") == "transfer" and l["transfer"]["direction"] == "receive"}
        assert peers == {me}, f"the receiver saw {peers}, the app is {me}"
        # A folder added on the app's data dir by the CLI: the app's node indexes it.
        app_folder = tmp / "app-shared"
        (app_folder / "docs").mkdir(parents=True)
        (app_folder / "docs" / "plan.txt").write_text("the plan\n")
        lib = find("[data-library]", 5, text="E2E Shared").get_attribute("data-library")
        added = subprocess.run([ferry, "--data-dir", app_data, "--json", "location", "add", str(app_folder),
                                "--library", lib], capture_output=True, text=True, timeout=60)
        assert added.returncode == 0, added
        assert '"phase":"done"' in added.stdout.replace(" ", ""), added.stdout
        # The app opens the CLI node's device: its folder is there; a rescan is refused.
        find(f'button[aria-label="Access cli-node"]', 10).click()
        got = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('control', {command: {cmd: 'remote', node: arguments[0], library: arguments[1],"
            " command: {cmd: 'status'}}}).then((r) => done(r), (e) => done('error: ' + String(e)));", cli_id, lib)
        assert isinstance(got, dict) and got["status"]["name"] == "cli-node", got
        # (Centred first: a click at the window's bottom edge, where the panel opens, is lost.)
        opener = find('button[aria-label="Open cli-node"]')
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", opener)
        opener.click()
        device = find('[aria-label="cli-node\'s device"]', 20)
        assert "cli-shared" in device.get_attribute("textContent"), device.get_attribute("textContent")
        find('button[aria-label="Rescan cli-shared on cli-node"]').click()
        find('[aria-label="Access for cli-node"] [role=status]', 10, text='not granted you "manage"')
        # The CLI node grants the app manage (attached to the running CLI node): now it works.
        grant = subprocess.run([ferry, "--data-dir", str(tmp / "cli-data"), "grant", me, "manage", "--library", lib],
                               capture_output=True, text=True, timeout=30)
        assert grant.returncode == 0, grant
        find('button[aria-label="Rescan cli-shared on cli-node"]').click()
        find('[aria-label="Access for cli-node"] [role=status]', 10, text="cli-node is rescanning cli-shared")
        # The other way: the CLI node asks the app's node to rescan the app's folder: refused,
        # then granted in the app, then done.
        rescan = [ferry, "--data-dir", str(tmp / "cli-data"), "--json", "--on", "desktop-e2e", "location", "rescan",
                  "app-shared", "--library", lib]
        refused = subprocess.run(rescan, capture_output=True, text=True, timeout=30)
        assert refused.returncode != 0 and 'not granted you \\"manage\\"' in refused.stdout, refused
        find('input[aria-label="cli-node: manage"]').click()
        deadline = time.time() + 10
        while True:
            ok = subprocess.run(rescan, capture_output=True, text=True, timeout=30)
            if ok.returncode == 0:
                break
            assert time.time() < deadline, ok
            time.sleep(0.3)
        # The app lists what the CLI node did here.
        find('button[aria-label="Access cli-node"]').click()
        find('button[aria-label="Access cli-node"]').click()
        log = find('[aria-label="What cli-node did here"]', 10)
        text = log.get_attribute("textContent")
        assert "rescan location · ok" in text and 'refused: no "manage" grant' in text, text
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})",
                              find('[aria-label="Access for cli-node"]'))
        driver.save_screenshot(str(SHOTS / "21-member-access.png"))

    def overflow_at_200(shot):
        """What a user with 200 % zoom sees: how far the page is wider than the window."""
        driver.execute_script("document.documentElement.style.zoom = '2'")
        time.sleep(0.5)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        driver.save_screenshot(str(SHOTS / shot))
        driver.execute_script("document.documentElement.style.zoom = '1'")
        return overflow

    def zoom_200():
        if driver.find_elements(By.CSS_SELECTOR, "[data-browsing]"):
            click_button("← All")  # an earlier step failed inside the library view
        if saved_download[0]:
            # The picture saved from the member is listed in Transfers, verified.
            find('li.download[aria-label="Saving pic-0.jpg from cli-node"]', 5, text="Done · verified")
            driver.save_screenshot(str(SHOTS / "19-download-listed.png"))
        # Everything reachable, nothing cut off sideways.
        overflow = overflow_at_200("6-zoom-200.png")
        assert overflow <= 1, f"the page is {overflow}px wider than the window at 200 % zoom"
        find("button", 5, text="Send files", exact=True)

    step("app shows the CLI node", sees_cli)
    step("CLI sends a folder, accepted in the app, arrives verified", accept_folder)
    step("pause and resume from the app", pause_and_resume)
    step("the app sends a file back to the CLI", send_back)
    step("pair the CLI node into a library, then remove it", pair_cli)
    step("browse the library: real thumbnails, Range, 10,000 entries, live", browse_library)
    step("a member's location syncs into the app: device group, folders, a new file", sync_with_cli)
    step("a member's thumbnails and files through ferry://, and while it is offline", remote_media)
    step("an attached CLI's send and folder in the app; grants between the app and a member", attached_cli_and_grants)
    step("readable at 200 % zoom", zoom_200)

    def app_attaches_to_a_headless_node():
        # The app closes; `ferry node` runs on its data dir (a service, say); the app opens again
        # and attaches to that node instead of failing: its identity and history, a prompt it
        # raises answered in the app, thumbnails through ferry:// over the node's socket.
        nonlocal driver
        me = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('snapshot').then((s) => done(s.me.id), (e) => done(String(e)));")
        driver.quit()
        head_down = tmp / "headless-down"
        # The app's node may still be closing (its data-dir lock held): until `ferry node` says
        # it started, it is started again.
        deadline = time.time() + 30
        while True:
            headless = subprocess.Popen(
                [ferry, "--no-discovery", "--listen", f"127.0.0.1:{APP_PORT}", "--name", "headless-e2e", "--data-dir",
                 str(tmp / "app-data"), "--dest", str(head_down), "--no-localsend", "--json", "node"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            first = headless.stdout.readline()
            if '"node_started"' in first:
                break
            headless.wait(5)
            assert time.time() < deadline, f"the headless node did not start: {first}"
            time.sleep(0.3)
        procs.append(headless)
        threading.Thread(target=lambda: [None for _ in headless.stdout], daemon=True).start()
        driver = webdriver.Remote(command_executor="http://127.0.0.1:4444", options=opts)
        driver.implicitly_wait(0)
        find(".me .badge", 20, text="attached")
        assert "headless-e2e" in find(".me", 5).get_attribute("textContent")
        got = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('snapshot').then((s) => done([s.me.id, s.attached]), (e) => done(String(e)));")
        assert got == [me, True], f"the same identity, attached: {got}"
        find("li.transfer", 10)  # the node's history, as before
        # A file offered to the node: the prompt shows in the attached app and is accepted there.
        gift = tmp / "for-headless.txt"
        gift.write_text("to the node behind the app\n")
        s = send(ferry, str(tmp / "sender-data"), f"127.0.0.1:{APP_PORT}", [str(gift)])
        procs.append(s)
        find("[role=dialog]", 20, text="cli-sender")
        click_button("Accept", within="[role=dialog]")
        assert s.wait(30) == 0, "ferry send to the headless node did not finish"
        assert (head_down / "for-headless.txt").read_text() == "to the node behind the app\n"
        # Thumbnails come through the node's socket (the five pictures and the one saved later).
        find('button[aria-label="Browse E2E Family"]', 10).click()
        decoded_thumbnails(6)
        driver.save_screenshot(str(SHOTS / "22-attached-app.png"))
        # Settings belong to the node: saving says so.
        err = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('snapshot').then((s) => window.__TAURI_INTERNALS__.invoke('save_settings', {settings: s.settings}))"
            ".then(() => done(null), (e) => done(String(e)));")
        assert err and "attached" in err, err
        # Closing the app leaves the node running.
        driver.quit()
        time.sleep(1)
        assert headless.poll() is None, "the headless node stopped with the app"
        driver = webdriver.Remote(command_executor="http://127.0.0.1:4444", options=opts)
        driver.implicitly_wait(0)
        find(".me .badge", 20, text="attached")

    step("the app attaches to a headless `ferry node` on its data dir", app_attaches_to_a_headless_node)

    try:
        driver.quit()
    except Exception:
        pass
    cli.stop()
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)  # SIGTERM, so tauri-driver stops WebKitWebDriver too
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
    shutil.rmtree(tmp, ignore_errors=True)
    passed = sum(1 for _, ok in results if ok)
    print(f"{passed} passed, {len(results) - passed} failed")
    sys.exit(0 if passed == len(results) else 1)


if __name__ == "__main__":
    main()
