// The level as a text map, and the tile rules that the physics and the renderer share.

export const TILE = 16;

// One character per 16x16 tile, 15 rows (240 px, the height of the view):
//   .  sky                      #  ground (solid)
//   B  brick (solid)            ?  coin block: solid, gives one coin when hit from below
//   X  stone block (solid)      -  plank platform: solid from above only
//   o  coin                     e  enemy start position
//   S  hero start position      F  top of the goal flagpole, which runs down to the block below it
// A gap in the two ground rows at the bottom is a pit.
export const LEVEL_MAP = [
  '................................................................................................................................................................................',
  '................................................................................................................................................................................',
  '................................................................................................................................................................................',
  '...............................................................................................................................oo....................................F..........',
  '.........................................ooo..............................oooooo.........................?....................----..............................................',
  '..................?.....................-----.............................BB?BBB.........................................................................X......................',
  '........................................................ooo................................................................oo...........................XX......................',
  '..............................................................................................oooo.....ooooo.....ooo......----.........................XXX......................',
  '...........................ooo....oooo................................................................-------.........................................XXXX......................',
  '.......ooo..?...B?B?B............------................X...X......BB?B?BB...........oo........................oo.....................oo.....B?B......XXXXX......................',
  '.........................X............................XX...XX.......................--.............X..................----..........................XXXXXX......................',
  '........................XX...........................XXX...XXX..............................X......X...............................................XXXXXXX......................',
  '...S.................e.XXX..........e.....e.........XXXX...XXXX....e...e.....e..............X..e...X....e.e.............e...e.....e.......e.......XXXXXXXX...........X..........',
  '###########################...#################..#######...########################....##########################...#################..#########################################',
  '###########################...#################..#######...########################....##########################...#################..#########################################',
];

const SOLID_TILES = new Set(['#', 'B', '?', 'X', 'U']);  // 'U' is a coin block that was already hit
const ONE_WAY_TILES = new Set(['-']);

export function isSolid(tile) {
  return SOLID_TILES.has(tile);
}

export function isOneWay(tile) {
  return ONE_WAY_TILES.has(tile);
}

// Parse a text map into a tile grid and the positions of the things that move or can be collected.
// Throws an Error naming the row or character that is wrong, so a typo in the map fails on load.
export function parseLevel(map) {
  const height = map.length;
  const width = map[0].length;
  const tiles = [];
  const coins = [];
  const enemies = [];
  let start = null;
  let flag = null;

  for (let row = 0; row < height; row++) {
    const line = map[row];
    if (line.length !== width) {
      throw new Error(`level row ${row} has ${line.length} columns, expected ${width}`);
    }
    const tileRow = [];
    for (let col = 0; col < width; col++) {
      const ch = line[col];
      let tile = ch;
      if (ch === 'o') {
        coins.push({ col, row });
        tile = '.';
      } else if (ch === 'e') {
        enemies.push({ col, row });
        tile = '.';
      } else if (ch === 'S') {
        start = { col, row };
        tile = '.';
      } else if (ch === 'F') {
        flag = { col, topRow: row };
        tile = '.';
      } else if (!isSolid(ch) && !isOneWay(ch) && ch !== '.') {
        throw new Error(`unknown tile '${ch}' at column ${col}, row ${row} of the level map`);
      }
      tileRow.push(tile);
    }
    tiles.push(tileRow);
  }

  if (start === null) throw new Error("level map has no hero start 'S'");
  if (flag === null) throw new Error("level map has no flagpole top 'F'");
  flag.baseRow = findFlagBase(tiles, flag);
  return { width, height, tiles, coins, enemies, start, flag };
}

// The flagpole stands on the first solid tile below its top.
function findFlagBase(tiles, flag) {
  for (let row = flag.topRow + 1; row < tiles.length; row++) {
    if (isSolid(tiles[row][flag.col])) return row;
  }
  throw new Error(`flagpole at column ${flag.col} has no solid block below it`);
}

// The mutable tile grid of one attempt at the level, rebuilt from the map after each lost life.
export class TileGrid {
  constructor(parsed) {
    this.width = parsed.width;
    this.height = parsed.height;
    this.tiles = parsed.tiles.map((row) => row.slice());
    this.bumps = [];  // blocks hit from below: {col, row, age} in seconds, for the bump animation
  }

  // Tiles outside the map are sky, so the hero can fall out of the bottom; the sides are walled by the physics.
  at(col, row) {
    if (row < 0 || row >= this.height || col < 0 || col >= this.width) return '.';
    return this.tiles[row][col];
  }

  set(col, row, tile) {
    this.tiles[row][col] = tile;
  }

  get pixelWidth() {
    return this.width * TILE;
  }

  get pixelHeight() {
    return this.height * TILE;
  }
}
