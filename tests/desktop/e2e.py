#!/usr/bin/env python3
"""End-to-end test of the real desktop app, driven through WebDriver (tauri-driver +
WebKitWebDriver) under Xvfb, against a real `ferry` CLI node on 127.0.0.1.

Discovery is off on both sides (host network namespace): the CLI connects to the app by address.
Steps: the app shows the CLI node; the CLI sends a folder; the test accepts in the app's prompt;
the files arrive verified; pause and resume from the app; the app sends a file back.
Screenshots of the window are saved in tests/desktop/shots/ (always for the main views, and when
a step fails). Prints `N passed, N failed` last.

Usage (from the repo root, under a display): python3 tests/desktop/e2e.py APP_BINARY FERRY_BINARY
"""

import json
import os
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
from selenium.webdriver.common.by import By
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

    def sees_cli():
        find("[data-peer]", 20, text="cli-node")
        driver.save_screenshot(str(SHOTS / "1-peers.png"))

    def accept_folder():
        s = send(ferry, str(tmp / "sender-data"), f"127.0.0.1:{APP_PORT}", [str(src)])
        procs.append(s)
        dialog = find("[role=dialog]", 20)
        what = dialog.get_attribute("textContent")
        assert "cli-sender" in what and "2 files" in what, what
        driver.save_screenshot(str(SHOTS / "2-prompt.png"))
        click_button("Accept", within="[role=dialog]")
        find(".transfer-state", 30, text="Done · verified")
        assert s.wait(30) == 0, "ferry send did not finish"
        got = tree(tmp / "app-down" / "vacation ✓")
        assert got == tree(src), "received folder differs"
        driver.save_screenshot(str(SHOTS / "3-done.png"))

    def pause_and_resume():
        big = tmp / "src" / "big.bin"
        with open(big, "wb") as f:
            f.truncate(1_500_000_000)  # sparse: fast to make, real bytes on the wire
        s = send(ferry, str(tmp / "sender-data"), f"127.0.0.1:{APP_PORT}", [str(big)])
        procs.append(s)
        find("[role=dialog]", 20)
        click_button("Accept", within="[role=dialog]")
        find(".transfer-state", 20, text="Receiving")
        click_button("Pause", within="li.transfer")
        find(".transfer-state", 10, text="Paused by you")
        driver.save_screenshot(str(SHOTS / "4-paused.png"))
        figures = lambda: find("li.transfer .transfer-figures", 5).get_attribute("textContent")
        time.sleep(1.0)  # what was already in flight when the pause landed still arrives
        before = figures()
        time.sleep(1.5)
        assert figures().split("%")[0] == before.split("%")[0], "progress moved while paused"
        click_button("Resume", within="li.transfer")
        find(".transfer-state", 60, text="Done · verified")
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
        cli.wait_for(lambda l: l.get("type") == "transfer" and l["transfer"]["state"] == "done", 30, "the file from the app")
        assert (tmp / "cli-down" / "from-app.txt").read_text() == "sent by the desktop app\n"
        find(".transfer-state", 10, text="Done · verified")
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

    def zoom_200():
        # What a user with 200 % zoom sees: everything reachable, nothing cut off sideways.
        driver.execute_script("document.documentElement.style.zoom = '2'")
        time.sleep(0.5)
        overflow = driver.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        driver.save_screenshot(str(SHOTS / "6-zoom-200.png"))
        driver.execute_script("document.documentElement.style.zoom = '1'")
        assert overflow <= 1, f"the page is {overflow}px wider than the window at 200 % zoom"
        find("button", 5, text="Send files", exact=True)

    step("app shows the CLI node", sees_cli)
    step("CLI sends a folder, accepted in the app, arrives verified", accept_folder)
    step("pause and resume from the app", pause_and_resume)
    step("the app sends a file back to the CLI", send_back)
    step("pair the CLI node into a library, then remove it", pair_cli)
    step("readable at 200 % zoom", zoom_200)

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
