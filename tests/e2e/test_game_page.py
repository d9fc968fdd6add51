"""The demo game in headless Chromium, driven through the Chrome DevTools Protocol.

The page is served from ``examples/supermario/www`` on 127.0.0.1 by Python's
``http.server``, in one test by busybox ``httpd``, the server of the game's
image, and in one as a user runs it: the image built with ``dockyard build``
and started with ``dockyard run -d -p 127.0.0.1:8600:8080``. The tests read the
game through its read-only hook ``window.__game.state()``.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

websocket = pytest.importorskip("websocket", reason="websocket-client is not installed (pip install websocket-client)")

log = logging.getLogger(__name__)

WWW_ROOT = Path(__file__).resolve().parents[2] / "examples" / "supermario" / "www"
CHROMIUM = shutil.which("chromium")
BUSYBOX = shutil.which("busybox")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--remote-debugging-port=0",
    "--window-size=960,800",
]
START_TIMEOUT = 20.0  # seconds for Chromium to open its DevTools port

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("game server: " + format, *args)


@pytest.fixture(scope="module")
def game_url() -> Iterator[str]:
    handler = functools.partial(QuietHandler, directory=str(WWW_ROOT))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="game-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def busybox_game_url() -> Iterator[str]:
    """Serve the game with busybox httpd, the server of the game's image."""
    if BUSYBOX is None:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    port = free_port()  # NOTE: another process could take the port before httpd binds it
    server = subprocess.Popen([BUSYBOX, "httpd", "-f", "-p", f"127.0.0.1:{port}", "-h", str(WWW_ROOT)])
    try:
        deadline = time.monotonic() + 5
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"busybox httpd did not listen on 127.0.0.1:{port}") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.terminate()
        server.wait(timeout=10)


class DevTools:
    """A minimal DevTools Protocol client for one page target. It keeps uncaught page exceptions, drops other events."""

    def __init__(self, websocket_url: str) -> None:
        self.connection = websocket.create_connection(websocket_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.exceptions: list[str] = []  # descriptions of uncaught exceptions in the page, once Runtime is enabled

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        command_id = self.next_id
        self.connection.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.connection.recv())
            if message.get("method") == "Runtime.exceptionThrown":
                details = message["params"]["exceptionDetails"]
                self.exceptions.append(details.get("exception", {}).get("description", details["text"]))
            if message.get("id") != command_id:
                continue  # an event, or the reply to an earlier command that timed out
            if "error" in message:
                raise AssertionError(f"DevTools command {method} failed: {message['error']}")
            return message["result"]

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise AssertionError(f"page raised while evaluating {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def key(self, event_type: str, code: str, key: str, key_code: int) -> None:
        self.send(
            "Input.dispatchKeyEvent",
            type=event_type,
            code=code,
            key=key,
            windowsVirtualKeyCode=key_code,
            nativeVirtualKeyCode=key_code,
        )

    def close(self) -> None:
        self.connection.close()


def wait_for_devtools_port(profile: Path, process: subprocess.Popen[bytes]) -> int:
    """Read the port Chromium chose: it writes it to DevToolsActivePort in the profile once it listens."""
    port_file = profile / "DevToolsActivePort"
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"chromium exited with status {process.returncode} before opening DevTools")
        lines = port_file.read_text().splitlines() if port_file.exists() else []
        if lines and lines[0].isdigit():
            return int(lines[0])
        time.sleep(0.1)
    raise AssertionError(f"chromium did not write {port_file} within {START_TIMEOUT} s")


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    """End Chromium and its helper processes, which share its process group because it leads a new session."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # helpers that outlived the browser process
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 5
    while live_group_members(process.pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"chromium helpers {live_group_members(process.pid)} survived SIGKILL for 5 s")
        time.sleep(0.05)


def live_group_members(group: int) -> list[int]:
    """Return the pids in process group ``group`` that are not zombies."""
    members = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_bytes()
        except OSError:
            continue
        # The command name in brackets may contain spaces, so split after the last ")".
        state, _parent, process_group = stat[stat.rindex(b")") + 2 :].split()[:3]
        if int(process_group) == group and state != b"Z":
            members.append(int(name))
    return members


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevTools]:
    """Start one headless Chromium for the whole module. Each test navigates it anew."""
    tmp_path = tmp_path_factory.mktemp("chromium")
    profile = tmp_path / "profile"
    profile.mkdir()
    with open(tmp_path / "chromium.log", "wb") as chromium_log:
        process = subprocess.Popen(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=chromium_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    log.info("started chromium, pid %d", process.pid)
    devtools = None
    try:
        port = wait_for_devtools_port(profile, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as response:
            targets = json.load(response)
        page_target = next(target for target in targets if target["type"] == "page")
        devtools = DevTools(page_target["webSocketDebuggerUrl"])
        devtools.send("Page.enable")
        devtools.send("Runtime.enable")
        yield devtools
    finally:
        if devtools is not None:
            devtools.close()
        stop_process_group(process)
        log.info("stopped chromium, pid %d", process.pid)


def open_game(page: DevTools, url: str) -> None:
    page.exceptions.clear()
    page.send("Page.navigate", url=url)
    deadline = time.monotonic() + 15
    while not page.evaluate("document.readyState === 'complete' && typeof window.__game === 'object'"):
        if time.monotonic() > deadline:
            raise AssertionError(f"the game at {url} did not load: window.__game is missing after 15 s")
        time.sleep(0.1)


def game_state(page: DevTools) -> dict[str, Any]:
    return page.evaluate("window.__game.state()")


def canvas_color_count(page: DevTools) -> int:
    """Count the distinct colours in the game canvas. A blank canvas has one."""
    return page.evaluate(
        """(() => {
            const canvas = document.getElementById('screen');
            const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
            const colors = new Set();
            for (let i = 0; i < pixels.length; i += 4) {
                colors.add((pixels[i] << 16) | (pixels[i + 1] << 8) | pixels[i + 2]);
            }
            return colors.size;
        })()"""
    )


def hold_key(page: DevTools, code: str, key: str, key_code: int, seconds: float) -> None:
    page.key("keyDown", code, key, key_code)
    time.sleep(seconds)
    page.key("keyUp", code, key, key_code)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "the screenshot is not a PNG"
    width, height = struct.unpack(">II", data[16:24])  # from the IHDR chunk, which comes first
    return width, height


def test_game_page_runs_and_moves(page: DevTools, game_url: str, tmp_path: Path) -> None:
    open_game(page, game_url)

    initial = game_state(page)
    assert initial["status"] == "playing"
    assert initial["lives"] == 3
    assert initial["score"] == 0

    # Sky, hills, tiles, the hero and the HUD give far more than a handful of colours.
    assert canvas_color_count(page) > 20

    hold_key(page, "ArrowRight", "ArrowRight", 39, 1.0)
    after_run = game_state(page)
    # About 140 px/s at full speed: a second of running moves well over two 16 px tiles.
    assert after_run["x"] > initial["x"] + 32, f"hero did not run right: {initial} -> {after_run}"
    assert after_run["status"] == "playing"

    before_jump = game_state(page)
    page.key("keyDown", "Space", " ", 32)
    time.sleep(0.2)
    mid_jump = game_state(page)
    page.key("keyUp", "Space", " ", 32)
    assert mid_jump["y"] < before_jump["y"] - 8, f"hero did not jump: {before_jump} -> {mid_jump}"

    screenshot = base64.b64decode(page.send("Page.captureScreenshot", format="png")["data"])
    viewport = page.evaluate("[window.innerWidth * devicePixelRatio, window.innerHeight * devicePixelRatio]")
    assert list(png_size(screenshot)) == viewport
    path = tmp_path / "game.png"
    path.write_bytes(screenshot)
    log.info("game screenshot saved to %s", path)

    game_state(page)  # reads the events that arrived meanwhile
    assert page.exceptions == []


def test_game_page_under_busybox_httpd(page: DevTools, busybox_game_url: str) -> None:
    # Browsers run module scripts only with a JavaScript MIME type, which busybox must send for .js.
    open_game(page, busybox_game_url)
    assert game_state(page)["status"] == "playing"
    assert canvas_color_count(page) > 20


GAME_DIRECTORY = WWW_ROOT.parent
GAME_PORT = 8600  # the port the demo publishes


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def wait_for_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except OSError as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {timeout} s: {error}") from None
            time.sleep(0.1)


@pytest.fixture
def game_container(dockyard: Any, test_images: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, str, str]]:
    """Build the game image and run it detached, as the demo does; yields (dockyard, container ID, URL)."""
    from tests.support.containers import MONITOR_IDLE_SECONDS

    monkeypatch.setenv("DOCKYARD_MONITOR_IDLE_TIMEOUT", MONITOR_IDLE_SECONDS)
    dockyard.run("build", "-t", "supermario", "--build-arg", f"BASE={test_images.busybox}", str(GAME_DIRECTORY))
    port = GAME_PORT
    if not port_is_free(port):
        port = free_port()  # NOTE: another process could take the port before the container publishes it
        message = f"port {GAME_PORT} on 127.0.0.1 is taken, so the game container publishes port {port} instead"
        print(message)
        log.warning(message)
    container_id = dockyard.run("run", "-d", "-p", f"127.0.0.1:{port}:8080", "supermario").stdout.strip()
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_for_http(url, 15)
        yield dockyard, container_id, url
    finally:
        dockyard.run("rm", "-f", container_id, check=False)
        from tests.integration.test_container_cli import stop_monitor

        stop_monitor(dockyard)
    assert dockyard.run("ps", "-a", "-q").stdout == ""


@pytest.mark.integration
def test_game_in_dockyard_container(page: DevTools, game_container: tuple[Any, str, str], tmp_path: Path) -> None:
    dockyard, container_id, url = game_container
    assert dockyard.run("exec", container_id, "id", "-un").stdout == "mario\n"

    open_game(page, url)
    initial = game_state(page)
    assert initial["status"] == "playing"
    assert canvas_color_count(page) > 20

    hold_key(page, "ArrowRight", "ArrowRight", 39, 1.0)
    after_run = game_state(page)
    assert after_run["x"] > initial["x"] + 32, f"hero did not run right: {initial} -> {after_run}"

    screenshot = base64.b64decode(page.send("Page.captureScreenshot", format="png")["data"])
    assert png_size(screenshot)[0] > 0
    path = tmp_path / "game-in-container.png"
    path.write_bytes(screenshot)
    print(f"screenshot of the game served by the container: {path}")

    game_state(page)  # reads the events that arrived meanwhile
    assert page.exceptions == []


# The rules, checked on small maps of their own. The page imports the game's modules a second time and
# steps a separate Game with scripted input, at 60 steps per game second and independent of frame timing.
SIMULATION = """
(async () => {
    const { Game } = await import('./js/game.js');
    const heldActions = new Set();
    const pendingPresses = new Set();
    const input = {
        isHeld: (action) => heldActions.has(action),
        consumePress: (action) => pendingPresses.delete(action),
    };
    const game = new Game(%(map)s);
    const states = [];
    function run(seconds) {
        for (let i = 0; i < Math.round(seconds * 60); i++) game.step(input, 1 / 60);
    }
    // Step until the condition holds; throws if it does not within maxSeconds of game time.
    function runUntil(condition, maxSeconds, description) {
        for (let i = 0; i < maxSeconds * 60; i++) {
            if (condition()) return;
            game.step(input, 1 / 60);
        }
        throw new Error(`timed out after ${maxSeconds} game seconds waiting for ${description}`);
    }
    function record(label) {
        states.push({ label, ...game.snapshot(), enemies: game.enemies.filter((e) => e.alive).length });
    }
    %(script)s
    return states;
})()
"""


def simulate(page: DevTools, url: str, game_map: list[str], script: str) -> dict[str, dict[str, Any]]:
    """Run a scripted game on game_map in the page and return the states recorded by label."""
    open_game(page, url)
    expression = SIMULATION % {"map": json.dumps(game_map), "script": script}
    return {state["label"]: state for state in page.evaluate(expression)}


SKY = "." * 24
GROUND = "#" * 24


def test_real_level_parses(page: DevTools, game_url: str) -> None:
    open_game(page, game_url)
    summary = page.evaluate(
        """(async () => {
            const { LEVEL_MAP, parseLevel } = await import('./js/level.js');
            const level = parseLevel(LEVEL_MAP);
            return { width: level.width, height: level.height, coins: level.coins.length,
                     enemies: level.enemies.length, flagColumn: level.flag.col };
        })()"""
    )
    assert summary["height"] == 15
    assert summary["width"] > 320 // 16 * 3, "the level should be several screens wide"
    assert summary["coins"] > 10
    assert summary["enemies"] > 5
    assert summary["flagColumn"] > summary["width"] - 20


def test_ragged_map_rejected(page: DevTools, game_url: str) -> None:
    open_game(page, game_url)
    message = page.evaluate(
        """(async () => {
            const { parseLevel } = await import('./js/level.js');
            try {
                parseLevel(['S...F', '....', '#####']);
            } catch (error) {
                return error.message;
            }
            return null;
        })()"""
    )
    assert message == "level row 1 has 4 columns, expected 5"


def test_stomp_squashes_enemy(page: DevTools, game_url: str) -> None:
    game_map = [SKY] * 6 + ["....S" + "." * 19] + [SKY] * 5 + ["....e" + "." * 18 + "F"] + ["#" * 23 + "X", GROUND]
    states = simulate(page, game_url, game_map, "record('start'); run(1); record('after');")
    assert states["start"]["enemies"] == 1
    assert states["after"]["enemies"] == 0
    assert states["after"]["score"] == 100
    assert states["after"]["lives"] == 3
    assert states["after"]["status"] == "playing"


def test_walking_enemy_costs_life(page: DevTools, game_url: str) -> None:
    game_map = [SKY] * 12 + ["..S....e" + "." * 15 + "F", "#" * 23 + "X", GROUND]
    states = simulate(page, game_url, game_map, "run(3); record('hit'); run(3); record('respawned');")
    assert states["hit"]["status"] == "dying"
    assert states["hit"]["lives"] == 2
    assert states["respawned"]["status"] == "playing"
    assert states["respawned"]["lives"] == 2


def test_pits_end_in_game_over(page: DevTools, game_url: str) -> None:
    game_map = [SKY] * 12 + ["..S" + "." * 20 + "F", "####....###############X", "####....################"]
    script = """
        heldActions.add('right');
        for (let attempt = 1; attempt <= 3; attempt++) {
            runUntil(() => game.status !== 'playing', 5, 'a fall into the pit');
            runUntil(() => game.status !== 'dying', 5, 'the end of the death animation');
            record('attempt ' + attempt);
        }
        heldActions.delete('right');
        pendingPresses.add('start');
        run(0.1);
        record('restarted');
    """
    states = simulate(page, game_url, game_map, script)
    assert states["attempt 1"]["lives"] == 2
    assert states["attempt 2"]["lives"] == 1
    assert states["attempt 3"]["lives"] == 0
    assert states["attempt 3"]["status"] == "gameover"
    assert states["restarted"]["status"] == "playing"
    assert states["restarted"]["lives"] == 3
    assert states["restarted"]["score"] == 0


def test_flag_wins_with_bonus(page: DevTools, game_url: str) -> None:
    game_map = [SKY] * 4 + ["." * 20 + "F..."] + [SKY] * 7 + ["..S.ooo" + "." * 10 + "XXX" + "X..."] + [GROUND] * 2
    script = """
        heldActions.add('right');
        heldActions.add('jump');
        // Jump again on each landing: up the steps and onto the pole.
        runUntil(() => {
            if (game.player.onGround) pendingPresses.add('jump');
            return game.status !== 'playing';
        }, 10, 'the flag');
        record('touched');
        runUntil(() => game.status === 'won', 6, 'the win screen');
        record('end');
        pendingPresses.add('start');
        run(0.1);
        record('again');
    """
    states = simulate(page, game_url, game_map, script)
    assert states["touched"]["status"] in ("flag", "won")
    assert states["end"]["status"] == "won"
    assert states["end"]["lives"] == 3
    assert states["end"]["score"] >= 100, "the flag gives at least 100 points"
    assert states["again"]["status"] == "playing"
    assert states["again"]["score"] == 0


def test_coin_block_gives_coin(page: DevTools, game_url: str) -> None:
    game_map = [SKY] * 9 + ["..?" + "." * 21] + [SKY] * 2 + ["..S" + "." * 20 + "F", "#" * 23 + "X", GROUND]
    script = """
        pendingPresses.add('jump');
        heldActions.add('jump');
        run(1);
        record('first');
        pendingPresses.add('jump');
        run(1);
        record('second');
        states.push({ label: 'tile', tile: game.grid.at(2, 9) });
    """
    states = simulate(page, game_url, game_map, script)
    assert states["first"]["coins"] == 1
    assert states["first"]["score"] == 200
    assert states["second"]["coins"] == 1, "an emptied block gives no second coin"
    assert states["tile"]["tile"] == "U"


def test_coins_collected(page: DevTools, game_url: str) -> None:
    game_map = [SKY] * 12 + ["..S.ooo" + "." * 16 + "F", "#" * 23 + "X", GROUND]
    states = simulate(page, game_url, game_map, "heldActions.add('right'); run(1.5); record('after');")
    assert states["after"]["coins"] == 3
    assert states["after"]["score"] == 600


# A bot that runs right and jumps only at a wall, at the edge of a pit, or before a beetle. If it can
# no longer finish the real level, a change to the map or the physics has made some jump impossible.
LEVEL_BOT = """
    const { TILE, isSolid, isOneWay } = await import('./js/level.js');
    const grid = () => game.grid;
    const standsOn = (col, row) => isSolid(grid().at(col, row)) || isOneWay(grid().at(col, row));
    function isPit(col, fromRow) {
        for (let row = fromRow; row < grid().height; row++) {
            if (standsOn(col, row)) return false;
        }
        return true;
    }
    function shouldJump() {
        const p = game.player;
        const footRow = Math.floor((p.y + p.h) / TILE);
        const edgeCol = Math.floor((p.x + p.w + 1) / TILE);
        const wall = isSolid(grid().at(Math.floor((p.x + p.w + 2) / TILE), footRow - 1));
        const pit = !standsOn(edgeCol, footRow) && (isPit(edgeCol, footRow) || isPit(edgeCol + 1, footRow));
        const beetle = game.enemies.some((e) => e.alive && e.active && e.x > p.x
            && e.x - (p.x + p.w) < 40 && Math.abs(e.y - p.y) < 20);
        return wall || pit || beetle;
    }
    heldActions.add('right');
    runUntil(() => {
        if (game.player.onGround && game.status === 'playing' && shouldJump()) {
            pendingPresses.add('jump');
            heldActions.add('jump');
        }
        if (game.player.vy > 0) heldActions.delete('jump');
        return game.status === 'won' || game.status === 'gameover';
    }, 120, 'the end of the level');
    record('end');
"""


def test_real_level_can_be_won(page: DevTools, game_url: str) -> None:
    open_game(page, game_url)
    expression = SIMULATION % {"map": "undefined", "script": LEVEL_BOT}
    states = {state["label"]: state for state in page.evaluate(expression)}
    assert states["end"]["status"] == "won", f"the bot did not finish the level: {states['end']}"
    assert states["end"]["coins"] > 0
