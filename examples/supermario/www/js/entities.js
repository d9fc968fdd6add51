// The things that move: the hero, the enemies, coins, and the tile collision they share.
// Positions are the top-left corner in pixels, velocities in pixels per second, times in seconds.

import { TILE, isSolid, isOneWay } from './level.js';

export const GRAVITY = 1500;
const MAX_FALL_SPEED = 420;
const EDGE = 0.001;  // keeps a box that touches a tile edge from counting as inside the next tile

// Move a body by its velocity for one step and push it out of solid tiles, one axis at a time.
// Returns which sides hit something, and the tiles that the head hit when moving up.
export function moveAndCollide(body, grid, dt) {
  const hits = { left: false, right: false, top: false, bottom: false, headTiles: [] };

  body.x += body.vx * dt;
  const top = Math.floor(body.y / TILE);
  const bottom = Math.floor((body.y + body.h - EDGE) / TILE);
  if (body.vx > 0) {
    const col = Math.floor((body.x + body.w - EDGE) / TILE);
    for (let row = top; row <= bottom; row++) {
      if (isSolid(grid.at(col, row))) {
        body.x = col * TILE - body.w;
        body.vx = 0;
        hits.right = true;
        break;
      }
    }
  } else if (body.vx < 0) {
    const col = Math.floor(body.x / TILE);
    for (let row = top; row <= bottom; row++) {
      if (isSolid(grid.at(col, row))) {
        body.x = (col + 1) * TILE;
        body.vx = 0;
        hits.left = true;
        break;
      }
    }
  }
  // The level's left and right edges are walls.
  if (body.x < 0) {
    body.x = 0;
    hits.left = true;
  } else if (body.x > grid.pixelWidth - body.w) {
    body.x = grid.pixelWidth - body.w;
    hits.right = true;
  }

  const previousBottom = body.y + body.h;
  body.y += body.vy * dt;
  const left = Math.floor(body.x / TILE);
  const right = Math.floor((body.x + body.w - EDGE) / TILE);
  if (body.vy > 0) {
    const row = Math.floor((body.y + body.h - EDGE) / TILE);
    const rowTop = row * TILE;
    for (let col = left; col <= right; col++) {
      const tile = grid.at(col, row);
      // A plank stops only a body that was above it before this step, so bodies can jump up through it.
      if (isSolid(tile) || (isOneWay(tile) && previousBottom <= rowTop + EDGE)) {
        body.y = rowTop - body.h;
        body.vy = 0;
        hits.bottom = true;
        break;
      }
    }
  } else if (body.vy < 0) {
    const row = Math.floor(body.y / TILE);
    for (let col = left; col <= right; col++) {
      if (isSolid(grid.at(col, row))) {
        hits.headTiles.push({ col, row });
      }
    }
    if (hits.headTiles.length > 0) {
      body.y = (row + 1) * TILE;
      body.vy = 0;
      hits.top = true;
    }
  }
  return hits;
}

export function overlaps(a, b) {
  return a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
}

function applyGravity(body, dt) {
  body.vy = Math.min(body.vy + GRAVITY * dt, MAX_FALL_SPEED);
}

// Tuned by play: a jump rises about 77 px (4.8 tiles) and, at full run, spans about 5.5 tiles.
const RUN_ACCELERATION = 600;
const TURN_ACCELERATION = 1400;  // pressing against the current direction brakes harder
const GROUND_FRICTION = 700;
const AIR_FRICTION = 150;
const MAX_RUN_SPEED = 140;
const JUMP_SPEED = 480;
const JUMP_CUT_SPEED = 260;      // releasing jump while rising caps the upward speed: a tap rises about 1.5 tiles
const COYOTE_TIME = 0.08;        // a jump still works this long after walking off a ledge
const JUMP_BUFFER_TIME = 0.1;    // a jump pressed this long before landing happens on landing
export const STOMP_BOUNCE_SPEED = 300;

// Rivet, the hero: a dock worker in a yellow hard hat.
export class Player {
  constructor(x, y) {
    this.w = 12;
    this.h = 15;
    this.x = x;
    this.y = y;
    this.vx = 0;
    this.vy = 0;
    this.facing = 1;         // 1 right, -1 left
    this.onGround = false;
    this.coyoteTimer = 0;
    this.jumpBufferTimer = 0;
    this.walkDistance = 0;   // drives the walk animation
    this.previousBottom = y + this.h;  // feet position before the last step, for telling a stomp from a bump
  }

  // Apply one step of running and jumping from the input, then move. Returns the collision hits.
  update(input, grid, dt) {
    const direction = (input.isHeld('right') ? 1 : 0) - (input.isHeld('left') ? 1 : 0);
    if (direction !== 0) {
      const braking = Math.sign(this.vx) === -direction;
      this.vx += direction * (braking ? TURN_ACCELERATION : RUN_ACCELERATION) * dt;
      this.vx = Math.max(-MAX_RUN_SPEED, Math.min(MAX_RUN_SPEED, this.vx));
      this.facing = direction;
    } else {
      const friction = (this.onGround ? GROUND_FRICTION : AIR_FRICTION) * dt;
      this.vx = Math.abs(this.vx) <= friction ? 0 : this.vx - Math.sign(this.vx) * friction;
    }

    this.coyoteTimer = this.onGround ? COYOTE_TIME : this.coyoteTimer - dt;
    this.jumpBufferTimer = input.consumePress('jump') ? JUMP_BUFFER_TIME : this.jumpBufferTimer - dt;
    if (this.jumpBufferTimer > 0 && this.coyoteTimer > 0) {
      this.vy = -JUMP_SPEED;
      this.jumpBufferTimer = 0;
      this.coyoteTimer = 0;
    }
    if (!input.isHeld('jump') && this.vy < -JUMP_CUT_SPEED) {
      this.vy = -JUMP_CUT_SPEED;
    }

    applyGravity(this, dt);
    this.previousBottom = this.y + this.h;
    const hits = moveAndCollide(this, grid, dt);
    this.onGround = hits.bottom;
    this.walkDistance = this.onGround ? this.walkDistance + Math.abs(this.vx) * dt : 0;
    return hits;
  }
}

const ENEMY_WALK_SPEED = 32;
const SQUASHED_TIME = 0.5;

// A bilge beetle. It walks until it hits a wall or another beetle, then turns, and it walks off ledges.
export class Enemy {
  constructor(x, y) {
    this.w = 14;
    this.h = 14;
    this.x = x;
    this.y = y;
    this.vx = -ENEMY_WALK_SPEED;  // start walking towards the hero, who comes from the left
    this.vy = 0;
    this.active = false;          // beetles wait until they scroll into view
    this.squashedTimer = 0;       // > 0 while the flattened beetle is shown
    this.removed = false;
    this.age = 0;
  }

  get alive() {
    return !this.removed && this.squashedTimer === 0;
  }

  squash() {
    this.squashedTimer = SQUASHED_TIME;
    this.vx = 0;
  }

  update(grid, dt) {
    this.age += dt;
    if (this.squashedTimer > 0) {
      this.squashedTimer -= dt;
      if (this.squashedTimer <= 0) this.removed = true;
      return;
    }
    const speed = Math.abs(this.vx) || ENEMY_WALK_SPEED;
    applyGravity(this, dt);
    const hits = moveAndCollide(this, grid, dt);
    if (hits.left) this.vx = speed;
    else if (hits.right) this.vx = -speed;
    if (this.y > grid.pixelHeight) this.removed = true;
  }

  turnAround() {
    this.vx = -this.vx;
  }
}

export class Coin {
  constructor(col, row) {
    this.w = 10;
    this.h = 12;
    this.x = col * TILE + 3;
    this.y = row * TILE + 2;
    this.collected = false;
  }
}

// The coin that jumps out of a coin block and disappears. It has already been counted.
export class CoinPop {
  constructor(col, row) {
    this.x = col * TILE + 3;
    this.y = row * TILE - 12;
    this.vy = -260;
    this.age = 0;
  }

  get done() {
    return this.age > 0.5;
  }

  update(dt) {
    this.age += dt;
    this.vy += GRAVITY * 0.7 * dt;
    this.y += this.vy * dt;
  }
}
