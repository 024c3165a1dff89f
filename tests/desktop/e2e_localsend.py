#!/usr/bin/env python3
"""The desktop app with a LocalSend device, end to end.

localsendd (PyPI; an independent LocalSend v2 daemon, from scripts/setup-localsend.sh) runs in
one network namespace and the real app, under Xvfb through tauri-driver, in another; this
script makes both namespaces and the veth pair between them, so discovery (mDNS and LocalSend's
multicast) never leaves them. Checked: the device appears in Nearby with its LocalSend badge; a
file the app sends to it arrives; a file it sends raises the app's prompt, marked as a LocalSend
device that is not Ferry-verified, and lands after Accept.

Usage: e2e_localsend.py APP_BINARY   (needs root; prints `N passed, N failed`)
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOTS = ROOT / "tests" / "desktop" / "shots"
LSD = ROOT / "target" / "localsendd-venv" / "bin"
APP_IP, LSD_IP = "10.98.0.1", "10.98.0.2"


def sh(*args):
    subprocess.run(args, check=True, capture_output=True)


def outer(app):
    if os.geteuid() != 0 or not (LSD / "localsendd").exists():
        why = "needs root" if os.geteuid() != 0 else "localsendd not installed (scripts/setup-localsend.sh)"
        if os.environ.get("CI") == "true":
            print(f"FAIL LocalSend app test cannot run in CI: {why}\n0 passed, 1 failed")
            return 1
        print(f"SKIPPED: {why}\n0 passed, 0 failed")
        return 0
    tag = os.getpid()
    ns_app, ns_lsd = f"ferry-e2e-app-{tag}", f"ferry-e2e-lsd-{tag}"
    tmp = Path(tempfile.mkdtemp(prefix="ferry-e2e-ls-"))
    lsd = None
    try:
        for ns in (ns_app, ns_lsd):
            sh("ip", "netns", "add", ns)
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "link", "add", "e2e-a", "netns", ns_app, "type", "veth", "peer", "name", "e2e-b", "netns", ns_lsd)
        for ns, dev, ip in ((ns_app, "e2e-a", APP_IP), (ns_lsd, "e2e-b", LSD_IP)):
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up", "multicast", "on")
            # No default route here: multicast needs one of its own.
            sh("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", dev)
        home = tmp / "lsd"
        home.mkdir()
        env = dict(os.environ, HOME=str(home), XDG_STATE_HOME=str(home / "state"),
                   XDG_CONFIG_HOME=str(home / "config"), XDG_RUNTIME_DIR=str(home))
        lsd = subprocess.Popen(
            ["ip", "netns", "exec", ns_lsd, str(LSD / "localsendd"), "--alias", "lsd-e2e", "--port", "53317",
             "--socket", str(home / "ctl.sock"), "--download-dir", str(home / "down"), "--unattended",
             "--log-level", "warning"],
            env=env, stdin=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not (home / "ctl.sock").exists():
            assert time.time() < deadline, "localsendd did not start"
            time.sleep(0.05)
        # The WebDriver side runs inside the app's namespace (tauri-driver listens there).
        return subprocess.run(["ip", "netns", "exec", ns_app, sys.executable, __file__, "--inner", app, str(tmp)],
                              env=env | {"HOME": os.environ.get("HOME", "/root")}).returncode
    finally:
        if lsd is not None:
            lsd.terminate()
            try:
                lsd.wait(5)
            except subprocess.TimeoutExpired:
                lsd.kill()
        for ns in (ns_app, ns_lsd):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)


def inner(app, tmp):
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.options import ArgOptions

    SHOTS.mkdir(parents=True, exist_ok=True)
    lsd_home = tmp / "lsd"
    env = dict(os.environ, FERRY_DATA_DIR=str(tmp / "app-data"), FERRY_DEST=str(tmp / "app-down"),
               FERRY_NAME="desktop-ls")
    driver_proc = subprocess.Popen(
        ["tauri-driver", "--port", "4444", "--native-port", "4445", "--native-driver", "/usr/bin/WebKitWebDriver"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    time.sleep(1.5)
    opts = ArgOptions()
    opts.set_capability("browserName", "wry")
    opts.set_capability("tauri:options", {"application": app})
    driver = webdriver.Remote(command_executor="http://127.0.0.1:4444", options=opts)
    results = []

    def find(css, timeout=15, text=None):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for el in driver.find_elements(By.CSS_SELECTOR, css):
                try:
                    if text is None or text in (el.get_attribute("textContent") or ""):
                        return el
                except Exception:
                    pass
            time.sleep(0.1)
        raise AssertionError(f"no element {css!r}" + (f" with text {text!r}" if text else ""))

    def step(name, f):
        t0 = time.time()
        try:
            f()
            results.append(True)
            print(f"ok   {name} ({time.time() - t0:.1f}s)", flush=True)
        except Exception:
            results.append(False)
            shot = SHOTS / f"FAILED-{name.replace(' ', '_')}.png"
            try:
                driver.save_screenshot(str(shot))
            except Exception:
                pass
            print(f"FAIL {name}: screenshot {shot}\n{traceback.format_exc()}", flush=True)

    device = {}

    def appears_in_nearby():
        card = find('[aria-label="LocalSend device lsd-e2e"]', 30)
        text = card.get_attribute("textContent")
        assert "LocalSend" in text, text
        assert "Pair" not in text, text
        device["fp"] = card.get_attribute("data-peer")
        assert len(device["fp"]) == 64, device
        driver.save_screenshot(str(SHOTS / "14-localsend-nearby.png"))

    def app_sends_to_it():
        src = tmp / "to-phone.txt"
        src.write_bytes(os.urandom(200_000))
        # What a drop onto the card calls (a drop from the file manager cannot be scripted).
        err = driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "window.__TAURI_INTERNALS__.invoke('send_paths', {peer: arguments[0], paths: [arguments[1]]})"
            ".then(() => done(null), (e) => done(String(e)));", device["fp"], str(src))
        assert err is None, err
        got = lsd_home / "down" / "to-phone.txt"
        deadline = time.time() + 30
        while not (got.exists() and got.stat().st_size == src.stat().st_size):
            assert time.time() < deadline, "the file never reached localsendd"
            time.sleep(0.1)
        assert got.read_bytes() == src.read_bytes()
        find("li.transfer .transfer-state", 15, text="Done")

    def it_sends_to_the_app():
        src = tmp / "from-phone.jpg"
        src.write_bytes(os.urandom(300_000))
        subprocess.run([str(LSD / "localsendctl"), "--socket", str(lsd_home / "ctl.sock"), "send", "--to", APP_IP,
                        str(src)], check=True, capture_output=True, timeout=30)
        dialog = find("[role=dialog]", 30, text="lsd-e2e")
        text = dialog.get_attribute("textContent")
        assert "LocalSend" in text and "not a paired or Ferry-verified device" in text, text
        assert "Verified device" not in text, text
        driver.save_screenshot(str(SHOTS / "15-localsend-prompt.png"))
        for b in dialog.find_elements(By.CSS_SELECTOR, "button"):
            if b.text.strip() == "Accept":
                b.click()
                break
        else:
            raise AssertionError("no Accept button")
        got = tmp / "app-down" / "from-phone.jpg"
        deadline = time.time() + 30
        while not got.exists():
            assert time.time() < deadline, "the file from localsendd never landed"
            time.sleep(0.1)
        assert got.read_bytes() == src.read_bytes()
        find('li.transfer[aria-label="Transfer from lsd-e2e"] .transfer-state', 15, text="Done")
        driver.save_screenshot(str(SHOTS / "16-localsend-received.png"))

    step("a LocalSend device appears in Nearby with its badge", appears_in_nearby)
    step("the app sends a file to the LocalSend device", app_sends_to_it)
    step("the LocalSend device sends to the app: a marked prompt, then the file", it_sends_to_the_app)
    try:
        driver.quit()
    except Exception:
        pass
    driver_proc.send_signal(signal.SIGTERM)
    try:
        driver_proc.wait(5)
    except subprocess.TimeoutExpired:
        driver_proc.kill()
    passed = sum(results)
    print(f"{passed} passed, {len(results) - passed} failed")
    return 0 if passed == len(results) else 1


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "--inner":
        sys.exit(inner(sys.argv[2], Path(sys.argv[3])))
    sys.exit(outer(sys.argv[1]))
