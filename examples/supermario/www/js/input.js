// Keyboard input: which game actions are held down, and which were pressed since the game last checked.

const BINDINGS = {
  ArrowLeft: 'left',
  KeyA: 'left',
  ArrowRight: 'right',
  KeyD: 'right',
  ArrowUp: 'jump',
  KeyW: 'jump',
  Space: 'jump',
  Enter: 'start',
};

export class Input {
  constructor(target) {
    this.heldKeys = new Set();       // KeyboardEvent.code values
    this.pressedActions = new Set(); // actions pressed and not yet consumed

    target.addEventListener('keydown', (event) => this.onKeyDown(event));
    target.addEventListener('keyup', (event) => this.onKeyUp(event));
    // A key released while the page is not focused sends no keyup, so forget every key on blur.
    target.addEventListener('blur', () => this.heldKeys.clear());
  }

  onKeyDown(event) {
    const action = BINDINGS[event.code];
    if (action === undefined) return;
    event.preventDefault();  // keep arrows and Space from scrolling the page
    this.heldKeys.add(event.code);
    if (!event.repeat) this.pressedActions.add(action);
  }

  onKeyUp(event) {
    if (BINDINGS[event.code] === undefined) return;
    event.preventDefault();
    this.heldKeys.delete(event.code);
  }

  isHeld(action) {
    for (const code of this.heldKeys) {
      if (BINDINGS[code] === action) return true;
    }
    return false;
  }

  // Return true once for each press of a key bound to the action.
  consumePress(action) {
    return this.pressedActions.delete(action);
  }

  clearPresses() {
    this.pressedActions.clear();
  }
}
