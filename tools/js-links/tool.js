// Links and titles of HTML pages: a Stockade tool written in JavaScript.
//
// `extract_links` is pure computation; `fetch_title` fetches a page through
// the host's egress policy; `whoami` shows the caller the host
// authenticated.

import { Toolbox, InvalidInput, caller, log } from '../sdk-js/stockade.js';

const tools = new Toolbox();

const LINKS_SCHEMA = {
  type: 'object',
  properties: {
    count: { type: 'integer' },
    links: { type: 'array', items: { type: 'object' } },
  },
  required: ['count', 'links'],
};

function extractLinks(html, base) {
  const links = [];
  const pattern = /<a\s[^>]*href\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))[^>]*>([\s\S]*?)<\/a>/gi;
  for (const match of html.matchAll(pattern)) {
    const href = match[1] ?? match[2] ?? match[3];
    let url = href;
    if (base) {
      try {
        url = new URL(href, base).href;
      } catch {
        // keep it as written
      }
    }
    links.push({ url, text: match[4].replace(/<[^>]*>/g, '').trim() });
  }
  return { count: links.length, links };
}

tools.tool(
  {
    name: 'extract_links',
    description: 'Lists the links of an HTML document: each target URL and its text.',
    input: {
      type: 'object',
      properties: {
        html: { type: 'string', description: 'The HTML text' },
        base: { type: 'string', description: 'A base URL that relative links are resolved against' },
      },
      required: ['html'],
      additionalProperties: false,
    },
    output: LINKS_SCHEMA,
    readOnly: true,
    idempotent: true,
  },
  ({ html, base }) => {
    if (base !== undefined) {
      try {
        new URL(base);
      } catch {
        throw new InvalidInput('field `base`: not a URL');
      }
    }
    return extractLinks(html, base);
  },
);

tools.tool(
  {
    name: 'fetch_title',
    description: 'Fetches an HTML page (through the egress policy) and returns its title and link count.',
    input: {
      type: 'object',
      properties: { url: { type: 'string', description: 'An http(s) URL the manifest allows' } },
      required: ['url'],
      additionalProperties: false,
    },
    readOnly: true,
    openWorld: true,
  },
  async ({ url }) => {
    const response = await fetch(url);
    if (!response.ok) {
      throw new InvalidInput(`field \`url\`: the server answered ${response.status}`);
    }
    const html = await response.text();
    log('info', `fetched ${html.length} characters`);
    const title = /<title[^>]*>([\s\S]*?)<\/title>/i.exec(html);
    return { title: title ? title[1].trim() : null, links: extractLinks(html).count };
  },
);

tools.tool(
  {
    name: 'whoami',
    description: 'Says who the host says is calling.',
    readOnly: true,
  },
  () => {
    const who = caller();
    return `hello ${who.client} (user ${who.user ?? '-'}, groups ${who.groups.join(', ') || 'none'})`;
  },
);

export const tool = tools.export();
