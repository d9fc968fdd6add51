// Draws one frame of the game onto the canvas: backdrop, tiles, things, the HUD and the end screens.

import { TILE } from './level.js';
import { STATUS, VIEW_WIDTH, VIEW_HEIGHT } from './game.js';
import { createSprites } from './sprites.js';

const SKY_TOP = '#5fb4f0';
const SKY_BOTTOM = '#bfe6ff';
const HUD_TEXT = '#ffffff';
const HUD_SHADOW = '#1b2a3a';
const HINT_TIME = 5;  // seconds the controls hint stays up on the first attempt of a game

export class Renderer {
  constructor(canvas) {
    this.context = canvas.getContext('2d');
    this.context.imageSmoothingEnabled = false;
    this.sprites = createSprites();
    this.sky = this.context.createLinearGradient(0, 0, 0, VIEW_HEIGHT);
    this.sky.addColorStop(0, SKY_TOP);
    this.sky.addColorStop(1, SKY_BOTTOM);
  }

  draw(game) {
    const context = this.context;
    const cameraX = Math.round(game.cameraX);
    context.fillStyle = this.sky;
    context.fillRect(0, 0, VIEW_WIDTH, VIEW_HEIGHT);
    this.drawBackdrop(cameraX);

    context.save();
    context.translate(-cameraX, 0);
    this.drawTiles(game, cameraX);
    this.drawFlag(game);
    this.drawCoins(game);
    this.drawEnemies(game);
    this.drawHero(game);
    context.restore();

    this.drawHud(game);
    this.drawStatusScreen(game);
  }

  // Far cranes, middle hills and clouds scroll slower than the level, for depth.
  drawBackdrop(cameraX) {
    const context = this.context;
    const craneShift = cameraX * 0.15;
    context.fillStyle = '#9cc8e8';
    for (let base = -((craneShift) % 260); base < VIEW_WIDTH + 260; base += 260) {
      context.fillRect(base + 40, 90, 6, 110);     // mast
      context.fillRect(base + 10, 90, 90, 5);      // jib
      context.fillRect(base + 46, 80, 3, 10);      // top of the mast
      context.fillRect(base + 90, 95, 1, 40);      // hook cable
      context.fillRect(base + 87, 135, 7, 5);      // hook block
      context.fillRect(base + 150, 150, 70, 50);   // warehouse
      context.fillRect(base + 160, 140, 50, 10);
    }

    const hillShift = cameraX * 0.35;
    for (let base = -(hillShift % 200) - 200; base < VIEW_WIDTH + 200; base += 200) {
      this.drawHill(base + 20, 208, 70, '#6cbf5a', '#4e9a40');
      this.drawHill(base + 120, 208, 40, '#7ed06a', '#5aa84a');
    }

    const cloudShift = cameraX * 0.25;
    for (let base = -(cloudShift % 240) - 240; base < VIEW_WIDTH + 240; base += 240) {
      this.drawCloud(base + 30, 30);
      this.drawCloud(base + 150, 58);
    }
  }

  // A stepped half-disc, drawn in 4 px bands to keep the pixel look.
  drawHill(centreX, baseY, radius, fill, outline) {
    const context = this.context;
    for (let dy = 0; dy < radius * 0.8; dy += 4) {
      const halfWidth = Math.round(Math.sqrt(radius * radius - dy * dy));
      context.fillStyle = outline;
      context.fillRect(centreX - halfWidth - 1, baseY - dy - 4, halfWidth * 2 + 2, 4);
      context.fillStyle = fill;
      context.fillRect(centreX - halfWidth + 1, baseY - dy - 3, halfWidth * 2 - 2, 4);
    }
  }

  drawCloud(x, y) {
    const context = this.context;
    context.fillStyle = '#ffffff';
    context.fillRect(x, y + 8, 48, 10);
    context.fillRect(x + 8, y + 2, 16, 8);
    context.fillRect(x + 22, y, 14, 10);
    context.fillStyle = '#d8ecfa';
    context.fillRect(x + 2, y + 16, 44, 2);
  }

  drawTiles(game, cameraX) {
    const context = this.context;
    const grid = game.grid;
    const tiles = this.sprites.tiles;
    const firstCol = Math.floor(cameraX / TILE);
    const lastCol = Math.min(grid.width - 1, firstCol + Math.ceil(VIEW_WIDTH / TILE));
    const shineFrame = Math.floor(game.time * 3) % 4 === 0 ? 1 : 0;

    for (let row = 0; row < grid.height; row++) {
      for (let col = firstCol; col <= lastCol; col++) {
        const tile = grid.at(col, row);
        let image = null;
        if (tile === '#') image = grid.at(col, row - 1) === '#' ? tiles.ground : tiles.groundTop;
        else if (tile === 'B') image = tiles.brick;
        else if (tile === '?') image = tiles.coinBlock[shineFrame];
        else if (tile === 'U') image = tiles.usedBlock;
        else if (tile === 'X') image = tiles.stone;
        else if (tile === '-') image = tiles.plank;
        if (image === null) continue;
        context.drawImage(image, col * TILE, row * TILE - this.bumpOffset(grid, col, row));
      }
    }
  }

  // A block hit from below jumps up by up to 4 px for a fifth of a second.
  bumpOffset(grid, col, row) {
    const bump = grid.bumps.find((b) => b.col === col && b.row === row);
    if (bump === undefined) return 0;
    return Math.round(Math.sin((bump.age / 0.2) * Math.PI) * 4);
  }

  drawFlag(game) {
    const context = this.context;
    const poleX = game.flagX - 1;
    context.fillStyle = '#e8eef2';
    context.fillRect(poleX, game.flagTopY + 4, 2, game.flagBaseY - game.flagTopY - 4);
    context.fillStyle = '#9aa7b0';
    context.fillRect(poleX + 1, game.flagTopY + 4, 1, game.flagBaseY - game.flagTopY - 4);
    context.fillStyle = '#3fbf6a';
    context.fillRect(poleX - 2, game.flagTopY, 6, 6);  // ball on top

    // A pennant to the left of the pole, with an anchor-like mark of our own.
    const clothY = Math.round(game.flagClothY);
    context.fillStyle = '#e8652b';
    for (let i = 0; i < 12; i++) {
      const height = 12 - i;
      context.fillRect(poleX - 1 - i, clothY + Math.floor(i / 2), 1, height);
    }
    context.fillStyle = '#ffffff';
    context.fillRect(poleX - 6, clothY + 3, 1, 6);
    context.fillRect(poleX - 8, clothY + 4, 5, 1);
    context.fillRect(poleX - 8, clothY + 8, 5, 1);
  }

  drawCoins(game) {
    const frames = this.sprites.coin;
    const spin = [0, 1, 2, 1];
    const frame = frames[spin[Math.floor(game.time * 8) % spin.length]];
    for (const coin of game.coinItems) {
      if (!coin.collected) this.context.drawImage(frame, coin.x, coin.y);
    }
    for (const pop of game.coinPops) {
      const popFrame = frames[spin[Math.floor(pop.age * 16) % spin.length]];
      this.context.drawImage(popFrame, Math.round(pop.x), Math.round(pop.y));
    }
  }

  drawEnemies(game) {
    for (const enemy of game.enemies) {
      const x = Math.round(enemy.x) - 1;  // the sprite is 16 px wide, the body 14
      if (enemy.squashedTimer > 0) {
        this.context.drawImage(this.sprites.beetleSquashed, x, Math.round(enemy.y + enemy.h) - 4);
      } else {
        const frame = this.sprites.beetle[Math.floor(enemy.age * 5) % 2];
        this.context.drawImage(frame, x, Math.round(enemy.y));
      }
    }
  }

  drawHero(game) {
    const player = game.player;
    const hero = this.sprites.hero;
    let pose;
    if (game.status === STATUS.DYING) pose = hero.hurt;
    else if (!player.onGround && game.status === STATUS.PLAYING) pose = hero.jump;
    else if (player.vx !== 0 && Math.floor(player.walkDistance / 6) % 2 === 1) pose = hero.walk;
    else pose = hero.stand;
    const image = player.facing < 0 ? pose.left : pose.right;
    this.context.drawImage(image, Math.round(player.x), Math.round(player.y));
  }

  drawText(text, x, y, align = 'left', size = 8) {
    const context = this.context;
    context.font = `bold ${size}px monospace`;
    context.textAlign = align;
    context.textBaseline = 'top';
    context.fillStyle = HUD_SHADOW;
    context.fillText(text, x + 1, y + 1);
    context.fillStyle = HUD_TEXT;
    context.fillText(text, x, y);
  }

  drawHud(game) {
    this.drawText(`SCORE ${String(game.score).padStart(6, '0')}`, 8, 6);
    this.context.drawImage(this.sprites.coin[0], 128, 4);
    this.drawText(`x${String(game.coins).padStart(2, '0')}`, 140, 6);
    this.drawText(`RIVET x${Math.max(game.lives, 0)}`, VIEW_WIDTH - 8, 6, 'right');
    if (game.status === STATUS.PLAYING && game.attempt === 1 && game.time < HINT_TIME) {
      this.drawText('Arrows/WASD: run   Space/Up: jump', VIEW_WIDTH / 2, 40, 'center');
    }
  }

  drawStatusScreen(game) {
    if (game.status !== STATUS.WON && game.status !== STATUS.GAME_OVER) return;
    const context = this.context;
    context.fillStyle = 'rgba(10, 20, 40, 0.7)';
    context.fillRect(0, 0, VIEW_WIDTH, VIEW_HEIGHT);
    const won = game.status === STATUS.WON;
    this.drawText(won ? 'YOU WIN!' : 'GAME OVER', VIEW_WIDTH / 2, 80, 'center', 16);
    this.drawText(`Score ${game.score}   Coins ${game.coins}`, VIEW_WIDTH / 2, 112, 'center');
    if (won) this.drawText(`Flag bonus ${game.flagBonus}`, VIEW_WIDTH / 2, 126, 'center');
    this.drawText(`Press Enter to ${won ? 'play again' : 'restart'}`, VIEW_WIDTH / 2, 150, 'center');
  }
}
