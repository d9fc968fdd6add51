// Entry point: creates the game, runs the fixed-timestep loop and exposes a read-only hook for tests.

import { Input } from './input.js';
import { Game } from './game.js';
import { Renderer } from './render.js';

const STEP = 1 / 60;          // seconds of game time per update, whatever the display's frame rate
const MAX_FRAME_TIME = 0.25;  // after a stall (a hidden tab, a debugger), skip time rather than fast-forward

const canvas = document.getElementById('screen');
const input = new Input(window);
const game = new Game();
const renderer = new Renderer(canvas);

let previousTime = null;
let unsimulatedTime = 0;

function frame(now) {
  if (previousTime !== null) {
    unsimulatedTime += Math.min((now - previousTime) / 1000, MAX_FRAME_TIME);
  }
  previousTime = now;
  while (unsimulatedTime >= STEP) {
    game.step(input, STEP);
    unsimulatedTime -= STEP;
  }
  renderer.draw(game);
  requestAnimationFrame(frame);
}

// Tests read the hero's position and the game's status here. The hook cannot change the game.
window.__game = Object.freeze({
  state() {
    return game.snapshot();
  },
});

canvas.focus();
requestAnimationFrame(frame);
