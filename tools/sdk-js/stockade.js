// Write Stockade tools in JavaScript.
//
// A tool module declares its tools on a Toolbox and exports it as the
// `stockade:tool/tool` interface, which componentize-js looks for as the
// export named `tool`:
//
//     import { Toolbox, InvalidInput } from '../sdk-js/stockade.js';
//
//     const tools = new Toolbox();
//     tools.tool({
//       name: 'shout',
//       description: 'Upper-cases text.',
//       input: { type: 'object', properties: { text: { type: 'string' } }, required: ['text'] },
//       readOnly: true,
//     }, ({ text }) => text.toUpperCase());
//
//     export const tool = tools.export();
//
// A handler may be async (use `fetch` for HTTP: the host sends it through
// the tool's egress policy). A string result is text; anything else
// JSON-encodable is JSON content, and the structured result when the tool
// declares `output`. Throw InvalidInput, Denied or Failed to return an
// error the client sees; any other error is reported as `failed` with its
// message. `cargo xtask build` builds every `tools/*/tool.js`.

import { caller as hostCaller, log as hostLog } from 'stockade:tool/host@0.1.0';

/** An error the tool returns to the client: the arguments were unusable. */
export class InvalidInput extends Error {}

/** An error the tool returns to the client: it refused, or was refused. */
export class Denied extends Error {}

/** An error the tool returns to the client: anything else. */
export class Failed extends Error {}

/** A result with several items: text, JSON, images, sounds. */
export class Output {
  constructor() {
    this.content = [];
    this.structured = undefined;
  }

  /** Adds a text item. */
  text(text) {
    this.content.push({ tag: 'text', val: String(text) });
    return this;
  }

  /** Adds a JSON item. */
  json(value) {
    this.content.push({ tag: 'json', val: JSON.stringify(value) });
    return this;
  }

  /** Adds an image; the host checks the bytes are of that type. */
  image(data, mimeType) {
    this.content.push({ tag: 'image', val: { data: new Uint8Array(data), mimeType } });
    return this;
  }

  /** Adds a sound; the host checks the bytes are of that type. */
  audio(data, mimeType) {
    this.content.push({ tag: 'audio', val: { data: new Uint8Array(data), mimeType } });
    return this;
  }

  /** Sets the structured result (must match the output schema). */
  structure(value) {
    this.structured = JSON.stringify(value);
    return this;
  }
}

/** The tools of one component. */
export class Toolbox {
  constructor() {
    this.tools = new Map();
  }

  /**
   * Declares a tool. `spec`: name, description, input (JSON Schema of the
   * arguments, an object schema), and optionally title, output (JSON
   * Schema of the structured result), readOnly, destructive, idempotent,
   * openWorld.
   */
  tool(spec, handler) {
    if (!spec.name || !spec.description) {
      throw new Error('a tool needs a name and a description');
    }
    if (this.tools.has(spec.name)) {
      throw new Error(`tool \`${spec.name}\` is declared twice`);
    }
    const input = spec.input ?? { type: 'object', properties: {}, additionalProperties: false };
    this.tools.set(spec.name, {
      handler,
      hasOutput: spec.output !== undefined,
      descriptor: {
        name: spec.name,
        title: spec.title,
        description: spec.description,
        inputSchema: JSON.stringify(input),
        outputSchema: spec.output === undefined ? undefined : JSON.stringify(spec.output),
        hints: {
          readOnly: Boolean(spec.readOnly),
          destructive: Boolean(spec.destructive),
          idempotent: Boolean(spec.idempotent),
          openWorld: Boolean(spec.openWorld),
        },
      },
    });
    return this;
  }

  /** The `stockade:tool/tool` export. */
  export() {
    return {
      list: () => [...this.tools.values()].map((t) => t.descriptor),
      call: (name, argumentsJson) => this.call(name, argumentsJson),
    };
  }

  async call(name, argumentsJson) {
    const declared = this.tools.get(name);
    if (!declared) {
      throw { tag: 'invalid-input', val: `no tool named \`${name}\`` };
    }
    let args;
    try {
      args = JSON.parse(argumentsJson);
    } catch (err) {
      throw { tag: 'invalid-input', val: `arguments are not JSON: ${err.message}` };
    }
    let result;
    try {
      result = await declared.handler(args);
    } catch (err) {
      if (err instanceof InvalidInput) throw { tag: 'invalid-input', val: err.message };
      if (err instanceof Denied) throw { tag: 'denied', val: err.message };
      throw { tag: 'failed', val: `${err?.name ?? 'Error'}: ${err?.message ?? err}` };
    }
    return toOutput(result, declared.hasOutput);
  }
}

function toOutput(result, structured) {
  if (result instanceof Output) {
    return { content: result.content, structured: result.structured };
  }
  if (typeof result === 'string') {
    return { content: [{ tag: 'text', val: result }], structured: undefined };
  }
  const text = JSON.stringify(result ?? null);
  return { content: [{ tag: 'json', val: text }], structured: structured ? text : undefined };
}

/** Whoever made this call, as the host authenticated it: client, user, groups. */
export function caller() {
  const who = hostCaller();
  return { client: who.client, user: who.user, groups: [...who.groups] };
}

/** Writes a line to the host's log: level is trace, debug, info, warn or error. */
export function log(level, message) {
  hostLog(level, String(message));
}
