// The rules of one game: lives, score, coins, stomping, dying and the flag. No drawing and no DOM.

import { TILE, LEVEL_MAP, parseLevel, TileGrid } from './level.js';
import { Player, Enemy, Coin, CoinPop, overlaps, STOMP_BOUNCE_SPEED } from './entities.js';

export const VIEW_WIDTH = 320;
export const VIEW_HEIGHT = 240;

export const STATUS = Object.freeze({
  PLAYING: 'playing',
  DYING: 'dying',        // the hero's fall after a hit or a pit, before the level restarts
  FLAG: 'flag',          // sliding down the flagpole
  WON: 'won',
  GAME_OVER: 'gameover',
});

const START_LIVES = 3;
const COIN_SCORE = 200;
const STOMP_SCORE = 100;
const BLOCK_COIN_SCORE = 200;
const COINS_PER_EXTRA_LIFE = 50;
const DEATH_TIME = 2.0;
const FLAG_SLIDE_SPEED = 140;
const FLAG_LANDING_PAUSE = 0.6;
const STOMP_TOLERANCE = 6;   // px the hero's feet may sink into a beetle and still count as a stomp
const ACTIVATION_MARGIN = 2 * TILE;

export class Game {
  constructor(map = LEVEL_MAP) {
    this.level = parseLevel(map);
    this.newGame();
  }

  newGame() {
    this.score = 0;
    this.coins = 0;
    this.lives = START_LIVES;
    this.attempt = 0;
    this.startAttempt();
  }

  // Rebuild the level as the map has it and put the hero at the start. Score, coins and lives carry over.
  startAttempt() {
    const level = this.level;
    this.attempt += 1;
    this.grid = new TileGrid(level);
    this.player = new Player(level.start.col * TILE + 2, (level.start.row + 1) * TILE - 15);
    this.enemies = level.enemies.map(({ col, row }) => new Enemy(col * TILE + 1, (row + 1) * TILE - 14));
    this.coinItems = level.coins.map(({ col, row }) => new Coin(col, row));
    this.coinPops = [];
    this.flagX = level.flag.col * TILE + TILE / 2;  // the pole's centre line
    this.flagBaseY = level.flag.baseRow * TILE;
    this.flagTopY = level.flag.topRow * TILE;
    this.flagClothY = this.flagTopY + 8;            // lowered as the hero slides down
    this.status = STATUS.PLAYING;
    this.statusTimer = 0;
    this.time = 0;
    this.cameraX = 0;
    this.stompChain = 0;
    this.updateCamera();
  }

  step(input, dt) {
    this.time += dt;
    this.statusTimer += dt;
    this.grid.bumps = this.grid.bumps.filter((bump) => (bump.age += dt) < 0.2);
    this.coinPops = this.coinPops.filter((pop) => {
      pop.update(dt);
      return !pop.done;
    });

    switch (this.status) {
      case STATUS.PLAYING:
        this.stepPlaying(input, dt);
        break;
      case STATUS.DYING:
        this.stepDying(dt);
        break;
      case STATUS.FLAG:
        this.stepFlag(dt);
        break;
      case STATUS.WON:
      case STATUS.GAME_OVER:
        if (input.consumePress('start')) this.newGame();
        break;
    }
    // A press of Enter during play, or of jump on the end screens, should not fire later.
    input.consumePress('start');
    if (this.status !== STATUS.PLAYING) input.consumePress('jump');
  }

  stepPlaying(input, dt) {
    const player = this.player;
    const hits = player.update(input, this.grid, dt);
    if (hits.top) this.hitBlockFromBelow(hits.headTiles);
    if (player.onGround) this.stompChain = 0;

    for (const coin of this.coinItems) {
      if (!coin.collected && overlaps(player, coin)) {
        coin.collected = true;
        this.addCoin(COIN_SCORE);
      }
    }

    this.updateEnemies(dt);
    this.checkEnemyContacts();
    if (this.status !== STATUS.PLAYING) return;

    if (player.y > this.grid.pixelHeight) {
      this.die(false);
      return;
    }
    if (player.x + player.w >= this.flagX) this.grabFlag();
    this.updateCamera();
  }

  // Of the tiles the head hit, only the one under the hero's centre reacts, as it would with one head.
  hitBlockFromBelow(headTiles) {
    const centreCol = Math.floor((this.player.x + this.player.w / 2) / TILE);
    const tile = headTiles.find(({ col }) => col === centreCol) ?? headTiles[0];
    const kind = this.grid.at(tile.col, tile.row);
    if (kind !== '?' && kind !== 'B') return;
    this.grid.bumps.push({ col: tile.col, row: tile.row, age: 0 });
    if (kind === '?') {
      this.grid.set(tile.col, tile.row, 'U');
      this.coinPops.push(new CoinPop(tile.col, tile.row));
      this.addCoin(BLOCK_COIN_SCORE);
    }
    // A beetle standing on the bumped block is knocked out.
    for (const enemy of this.enemies) {
      const standsOnBlock = enemy.alive && enemy.active
        && Math.abs(enemy.y + enemy.h - tile.row * TILE) < 1
        && enemy.x + enemy.w > tile.col * TILE && enemy.x < (tile.col + 1) * TILE;
      if (standsOnBlock) {
        enemy.squash();
        this.score += STOMP_SCORE;
      }
    }
  }

  addCoin(points) {
    this.coins += 1;
    this.score += points;
    if (this.coins % COINS_PER_EXTRA_LIFE === 0) this.lives += 1;
  }

  updateEnemies(dt) {
    const activeRight = this.cameraX + VIEW_WIDTH + ACTIVATION_MARGIN;
    for (const enemy of this.enemies) {
      if (!enemy.active && enemy.x < activeRight) enemy.active = true;
      if (enemy.active && !enemy.removed) enemy.update(this.grid, dt);
    }
    // Two beetles that walk into each other both turn around.
    const walking = this.enemies.filter((enemy) => enemy.active && enemy.alive);
    for (let i = 0; i < walking.length; i++) {
      for (let j = i + 1; j < walking.length; j++) {
        const a = walking[i];
        const b = walking[j];
        if (!overlaps(a, b)) continue;
        const aIsLeft = a.x < b.x;
        a.vx = (aIsLeft ? -1 : 1) * Math.abs(a.vx);
        b.vx = (aIsLeft ? 1 : -1) * Math.abs(b.vx);
      }
    }
    this.enemies = this.enemies.filter((enemy) => !enemy.removed);
  }

  checkEnemyContacts() {
    const player = this.player;
    for (const enemy of this.enemies) {
      if (!enemy.active || !enemy.alive || !overlaps(player, enemy)) continue;
      const falling = player.vy > 0;
      if (falling && player.previousBottom <= enemy.y + STOMP_TOLERANCE) {
        enemy.squash();
        this.stompChain += 1;
        this.score += STOMP_SCORE * this.stompChain;  // stomps without landing in between score more
        player.vy = -STOMP_BOUNCE_SPEED;
      } else {
        this.die(true);
        return;
      }
    }
  }

  // Lose a life. A hit throws the hero up first, but a fall into a pit just continues.
  die(hitByEnemy) {
    this.lives -= 1;
    this.status = STATUS.DYING;
    this.statusTimer = 0;
    this.player.vx = 0;
    this.player.vy = hitByEnemy ? -380 : 0;
  }

  stepDying(dt) {
    const player = this.player;
    if (this.statusTimer > 0.3) {  // a short freeze before the fall, so the hit is seen
      player.vy += 1500 * dt;
      player.y += player.vy * dt;
    }
    if (this.statusTimer < DEATH_TIME) return;
    if (this.lives <= 0) {
      this.status = STATUS.GAME_OVER;
      this.statusTimer = 0;
    } else {
      this.startAttempt();
    }
  }

  // Touching the pole ends the run: the higher the grab, the bigger the bonus.
  grabFlag() {
    const player = this.player;
    const heightInTiles = Math.max(0, (this.flagBaseY - (player.y + player.h)) / TILE);
    this.flagBonus = 100 * (1 + Math.floor(heightInTiles));
    this.score += this.flagBonus;
    player.x = this.flagX - player.w;
    player.vx = 0;
    player.vy = 0;
    player.facing = 1;
    this.status = STATUS.FLAG;
    this.statusTimer = 0;
  }

  stepFlag(dt) {
    const player = this.player;
    const landedY = this.flagBaseY - player.h;
    if (player.y < landedY) {
      player.y = Math.min(landedY, player.y + FLAG_SLIDE_SPEED * dt);
      this.statusTimer = 0;
    }
    this.flagClothY = Math.min(this.flagBaseY - 16, this.flagClothY + FLAG_SLIDE_SPEED * dt);
    if (player.y >= landedY && this.statusTimer > FLAG_LANDING_PAUSE) {
      this.status = STATUS.WON;
      this.statusTimer = 0;
    }
  }

  updateCamera() {
    const centre = this.player.x + this.player.w / 2 - VIEW_WIDTH / 2;
    this.cameraX = Math.max(0, Math.min(this.grid.pixelWidth - VIEW_WIDTH, centre));
  }

  // A copy of what a test or a debugger may want to read; changing it changes nothing in the game.
  snapshot() {
    return {
      x: this.player.x,
      y: this.player.y,
      score: this.score,
      coins: this.coins,
      lives: this.lives,
      status: this.status,
    };
  }
}
