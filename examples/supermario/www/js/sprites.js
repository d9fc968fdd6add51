// The game's own pixel art, drawn in code: each sprite is rows of palette letters, '.' for transparent.

const PALETTE = {
  Y: '#f5c518',  // hard hat
  y: '#c8960c',  // hard hat shade
  S: '#f1b58a',  // skin
  K: '#2a1d1a',  // eyes, boots, outlines
  O: '#e8652b',  // shirt
  B: '#2f5fb3',  // overalls
  b: '#1f3f7a',  // overalls shade
  W: '#ffffff',
  P: '#7b3f8c',  // beetle shell
  p: '#4e2260',  // beetle shell shade
  L: '#d9a066',  // beetle belly
  G: '#ffd54a',  // coin
  g: '#c98d00',  // coin edge
  H: '#fff3b0',  // coin shine
};

const HERO_STAND = [
  '....YYYYY...',
  '...YYYYYYY..',
  '..YyYYYYYYY.',
  '.yyyyyyyyyyy',
  '...SSSSSS...',
  '...SSSSKSS..',
  '...SSSSSSSS.',
  '....SSSSS...',
  '...OOBBOO...',
  '..OOOBBOOO..',
  '.SSOBBBBOSS.',
  '...BBBBBB...',
  '...Bb..bB...',
  '...BB..BB...',
  '..KKK..KKK..',
];

const HERO_WALK = [
  '....YYYYY...',
  '...YYYYYYY..',
  '..YyYYYYYYY.',
  '.yyyyyyyyyyy',
  '...SSSSSS...',
  '...SSSSKSS..',
  '...SSSSSSSS.',
  '....SSSSS...',
  '..SOOBBOO...',
  '..OOOBBOOOS.',
  '...OBBBBO...',
  '...BBBBBB...',
  '..BBb..bBB..',
  '.BB......BB.',
  'KKK......KKK',
];

const HERO_JUMP = [
  '....YYYYY.SS',
  '...YYYYYYYO.',
  '..YyYYYYYYO.',
  '.yyyyyyyyyyy',
  '...SSSSSS...',
  '...SSSSKSS..',
  '...SSSSSSSS.',
  '....SSSSS...',
  '..OOOBBOO...',
  '.SOOOBBOO...',
  '.S.OBBBBB...',
  '...BBBBBBB..',
  '..BBb...bBK.',
  '.KBB.....KK.',
  '.KK.........',
];

const HERO_HURT = [
  '....YYYYY...',
  '...YYYYYYY..',
  '..YyYYYYYYY.',
  '.yyyyyyyyyy.',
  'SS.SSSSSS.SS',
  'O..SKSSKS..O',
  'O..SSSSSS..O',
  'OO..SKKS..OO',
  '.OOOOBBOOOO.',
  '....OBBO....',
  '...BBBBBB...',
  '...BBBBBB...',
  '...Bb..bB...',
  '...BB..BB...',
  '..KKK..KKK..',
];

const BEETLE_A = [
  '.....pPPPPp.....',
  '...pPPPPPPPPp...',
  '..pPPPPPPPPPPp..',
  '.pPWWKPPPPWWKPp.',
  '.PPWWKPPPPWWKPP.',
  'pPPPPPPPPPPPPPPp',
  'pPPPPPPPPPPPPPPp',
  'pPPPPPPPPPPPPPPp',
  '.ppppppppppppp..',
  '..LLLLLLLLLLLL..',
  '..LLLLLLLLLLLL..',
  '..KK.......KKK..',
  '.KKKK.....KKKK..',
  '.KKK.......KK...',
];

const BEETLE_B = [
  '.....pPPPPp.....',
  '...pPPPPPPPPp...',
  '..pPPPPPPPPPPp..',
  '.pPWWKPPPPWWKPp.',
  '.PPWWKPPPPWWKPP.',
  'pPPPPPPPPPPPPPPp',
  'pPPPPPPPPPPPPPPp',
  'pPPPPPPPPPPPPPPp',
  '.ppppppppppppp..',
  '..LLLLLLLLLLLL..',
  '..LLLLLLLLLLLL..',
  '...KKK.....KK...',
  '..KKKK....KKKK..',
  '...KK.....KKK...',
];

const BEETLE_SQUASHED = [
  '..pPPPPPPPPPPp..',
  'pPPKKPPPPPPKKPPp',
  'pppppppppppppppp',
  '.KKLLLLLLLLLLKK.',
];

const COIN_FRAMES = [
  [
    '...gggg...',
    '..gGGGGg..',
    '.gGHGGGGg.',
    '.gGHGgGGg.',
    '.gGHGgGGg.',
    '.gGHGgGGg.',
    '.gGHGgGGg.',
    '.gGHGgGGg.',
    '.gGGGGGGg.',
    '..gGGGGg..',
    '...gggg...',
    '..........',
  ],
  [
    '....gg....',
    '...gGGg...',
    '...gHGg...',
    '...gHGg...',
    '...gHGg...',
    '...gHGg...',
    '...gHGg...',
    '...gHGg...',
    '...gGGg...',
    '...gGGg...',
    '....gg....',
    '..........',
  ],
  [
    '....gg....',
    '....gg....',
    '....Gg....',
    '....Gg....',
    '....Gg....',
    '....Gg....',
    '....Gg....',
    '....Gg....',
    '....Gg....',
    '....gg....',
    '....gg....',
    '..........',
  ],
];

function makeCanvas(width, height) {
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  return canvas;
}

function paintRows(rows, mirrored) {
  const width = rows[0].length;
  const canvas = makeCanvas(width, rows.length);
  const context = canvas.getContext('2d');
  rows.forEach((line, y) => {
    for (let x = 0; x < width; x++) {
      const color = PALETTE[line[x]];
      if (color === undefined) continue;
      context.fillStyle = color;
      context.fillRect(mirrored ? width - 1 - x : x, y, 1, 1);
    }
  });
  return canvas;
}

// A sprite facing right and its mirror image facing left.
function facingPair(rows) {
  return { right: paintRows(rows, false), left: paintRows(rows, true) };
}

// Fill a 16x16 tile canvas with a painter function that draws with fillRect.
function paintTile(painter) {
  const canvas = makeCanvas(16, 16);
  painter(canvas.getContext('2d'));
  return canvas;
}

function rect(context, color, x, y, w, h) {
  context.fillStyle = color;
  context.fillRect(x, y, w, h);
}

function paintGround(context, withGrass) {
  rect(context, '#b8733d', 0, 0, 16, 16);
  rect(context, '#8c5228', 0, 15, 16, 1);
  for (const [x, y] of [[2, 5], [9, 3], [12, 10], [5, 12], [7, 8], [14, 6]]) {
    rect(context, '#8c5228', x, y, 2, 1);
    rect(context, '#d08a50', x, y - 1, 1, 1);
  }
  if (withGrass) {
    rect(context, '#5dbb46', 0, 0, 16, 4);
    rect(context, '#3f8f2f', 0, 4, 16, 1);
    for (const x of [1, 5, 8, 12, 14]) rect(context, '#3f8f2f', x, 5, 1, 1);
    rect(context, '#8de070', 0, 0, 16, 1);
  }
}

function paintBrick(context) {
  rect(context, '#5a2a12', 0, 0, 16, 16);
  const brick = '#c2602f';
  const light = '#e08a55';
  for (let row = 0; row < 4; row++) {
    const offset = row % 2 === 0 ? 0 : 4;
    for (let x = -8 + offset; x < 16; x += 8) {
      rect(context, brick, x, row * 4, 7, 3);
      rect(context, light, x, row * 4, 7, 1);
    }
  }
}

function paintCoinBlock(context, shine) {
  rect(context, '#7a4a00', 0, 0, 16, 16);
  rect(context, shine ? '#ffc83a' : '#f0a818', 1, 1, 14, 14);
  rect(context, '#ffe08a', 1, 1, 14, 1);
  rect(context, '#ffe08a', 1, 1, 1, 14);
  rect(context, '#b87400', 1, 14, 14, 1);
  rect(context, '#b87400', 14, 1, 1, 14);
  for (const [x, y] of [[2, 2], [12, 2], [2, 12], [12, 12]]) rect(context, '#7a4a00', x, y, 2, 2);
  // A coin emblem in the middle rather than a letter.
  rect(context, '#7a4a00', 6, 4, 4, 8);
  rect(context, '#7a4a00', 5, 5, 6, 6);
  rect(context, '#fff3b0', 6, 5, 3, 6);
  rect(context, '#fff3b0', 7, 4, 2, 8);
  rect(context, '#c98d00', 8, 6, 1, 4);
}

function paintUsedBlock(context) {
  rect(context, '#4a3426', 0, 0, 16, 16);
  rect(context, '#8a6a4e', 1, 1, 14, 14);
  rect(context, '#6a4e38', 1, 14, 14, 1);
  rect(context, '#6a4e38', 14, 1, 1, 14);
  for (const [x, y] of [[2, 2], [12, 2], [2, 12], [12, 12]]) rect(context, '#4a3426', x, y, 2, 2);
}

function paintStone(context) {
  rect(context, '#6b737c', 0, 0, 16, 16);
  rect(context, '#a9b3bd', 0, 0, 15, 1);
  rect(context, '#a9b3bd', 0, 0, 1, 15);
  rect(context, '#8c959f', 1, 1, 14, 14);
  rect(context, '#3e454c', 1, 15, 15, 1);
  rect(context, '#3e454c', 15, 1, 1, 15);
  rect(context, '#9aa3ad', 3, 3, 10, 10);
  rect(context, '#7b848d', 4, 12, 9, 1);
  rect(context, '#7b848d', 12, 4, 1, 9);
}

function paintPlank(context) {
  rect(context, '#5c3a1a', 0, 0, 16, 6);
  rect(context, '#b07a3c', 0, 1, 16, 4);
  rect(context, '#d49a58', 0, 1, 16, 1);
  rect(context, '#8a5a28', 5, 2, 4, 1);
  rect(context, '#2a1d1a', 2, 3, 1, 1);
  rect(context, '#2a1d1a', 13, 3, 1, 1);
  rect(context, '#5c3a1a', 3, 6, 2, 3);
  rect(context, '#5c3a1a', 11, 6, 2, 3);
}

export function createSprites() {
  return {
    hero: {
      stand: facingPair(HERO_STAND),
      walk: facingPair(HERO_WALK),
      jump: facingPair(HERO_JUMP),
      hurt: facingPair(HERO_HURT),
    },
    beetle: [paintRows(BEETLE_A, false), paintRows(BEETLE_B, false)],
    beetleSquashed: paintRows(BEETLE_SQUASHED, false),
    coin: COIN_FRAMES.map((rows) => paintRows(rows, false)),
    tiles: {
      ground: paintTile((c) => paintGround(c, false)),
      groundTop: paintTile((c) => paintGround(c, true)),
      brick: paintTile(paintBrick),
      coinBlock: [paintTile((c) => paintCoinBlock(c, false)), paintTile((c) => paintCoinBlock(c, true))],
      usedBlock: paintTile(paintUsedBlock),
      stone: paintTile(paintStone),
      plank: paintTile(paintPlank),
    },
  };
}
