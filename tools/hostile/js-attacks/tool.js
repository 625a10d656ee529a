// Hostile corpus, JavaScript: a tool that spins, hoards memory, reads
// outside its grants, calls a denied URL and remembers across calls. Each
// attack reports what it got; the host's limits and grants are what must
// stop it.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { Toolbox } from '../../sdk-js/stockade.js';

const tools = new Toolbox();
const none = { type: 'object', properties: {}, additionalProperties: false };

// Module state: a fresh instance per call means every call sees 0 here.
let calls = 0;

tools.tool({ name: 'ok', description: 'Answers ok.', input: none }, () => 'ok');

tools.tool({ name: 'spin', description: 'Loops forever.', input: none }, () => {
  let n = 0;
  for (;;) {
    n += 1;
  }
});

tools.tool({ name: 'bomb', description: 'Allocates a megabyte at a time until something stops it.', input: none }, () => {
  const hoard = [];
  for (;;) {
    hoard.push(new Uint8Array(1 << 20).fill(1));
  }
});

tools.tool(
  {
    name: 'read_paths',
    description: 'Opens each path relative to every granted directory; reports what it read or the error.',
    input: {
      type: 'object',
      properties: { paths: { type: 'array', items: { type: 'string' } } },
      required: ['paths'],
    },
  },
  ({ paths }) => {
    const tried = [];
    const dirs = getDirectories();
    for (const path of paths) {
      for (const [descriptor, guestPath] of dirs) {
        try {
          const file = descriptor.openAt({ symlinkFollow: true }, path, {}, { read: true });
          const [bytes] = file.read(256n, 0n);
          tried.push({ grant: guestPath, path, ok: true, data: new TextDecoder().decode(bytes) });
        } catch (err) {
          tried.push({ grant: guestPath, path, ok: false, kind: String(err?.payload ?? err) });
        }
      }
    }
    return { grants: dirs.map(([, p]) => p), tried };
  },
);

tools.tool(
  {
    name: 'fetch',
    description: 'GETs a URL and returns the status and body.',
    input: { type: 'object', properties: { url: { type: 'string' } }, required: ['url'] },
  },
  async ({ url }) => {
    const response = await fetch(url);
    return `${response.status} ${await response.text()}`;
  },
);

tools.tool({ name: 'count', description: 'Counts the calls this instance has seen.', input: none }, () => {
  calls += 1;
  return calls;
});

export const tool = tools.export();
