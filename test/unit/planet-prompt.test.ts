import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { buildPlanetPrompt } from '../../services/router/planet-prompt.js';

describe('buildPlanetPrompt', () => {
  test('builds the DESIGN example', () => {
    assert.equal(
      buildPlanetPrompt({ color: 'deep blue', atmosphere: 'frosted cloudy zones', moons: 'no moons', sky: 'distant stars dark sky' }),
      'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky',
    );
  });

  test('uses the fixed order colour, atmosphere, moons, sky whatever the key order of the object', () => {
    const expected = 'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky';
    assert.equal(buildPlanetPrompt({ sky: 'distant stars dark sky', moons: 'no moons', atmosphere: 'frosted cloudy zones', color: 'deep blue' }), expected);
    assert.equal(buildPlanetPrompt({ moons: 'no moons', color: 'deep blue', sky: 'distant stars dark sky', atmosphere: 'frosted cloudy zones' }), expected);
  });

  test('skips empty slots without leaving stray separators', () => {
    assert.equal(buildPlanetPrompt({ color: 'red', sky: 'black sky' }), 'red planet, black sky');
    assert.equal(buildPlanetPrompt({ color: 'red', moons: '', sky: '   ' }), 'red planet');
    assert.equal(buildPlanetPrompt({ moons: 'two moons' }), 'two moons');
  });

  test('says "planet with" when the colour is empty but the atmosphere is set', () => {
    assert.equal(buildPlanetPrompt({ atmosphere: 'thin haze', moons: 'one moon' }), 'planet with thin haze, one moon');
  });

  test('returns an empty string when every slot is empty', () => {
    assert.equal(buildPlanetPrompt({}), '');
    assert.equal(buildPlanetPrompt({ color: ' ', atmosphere: '\t', moons: '', sky: '\n', extras: ['', '  '] }), '');
  });

  test('trims and collapses whitespace inside every slot', () => {
    assert.equal(
      buildPlanetPrompt({ color: '  deep \t blue ', atmosphere: 'frosted\n\ncloudy   zones', moons: ' no  moons', sky: 'distant stars\r\ndark sky ', extras: ['  thin   rings '] }),
      'deep blue planet with frosted cloudy zones, no moons, distant stars dark sky, thin rings',
    );
  });

  test('appends extras after the four slots, in their given order', () => {
    assert.equal(
      buildPlanetPrompt({ extras: ['rings', 'aurora'], sky: 'dark sky', color: 'green' }),
      'green planet, dark sky, rings, aurora',
    );
  });

  test('skips empty extras', () => {
    assert.equal(buildPlanetPrompt({ color: 'red', extras: ['', 'rings', '  '] }), 'red planet, rings');
  });
});
