// A tools component written against wasmcp's MCP 2025-11-25 `tools`
// interface (wasmcp:mcp-v20251125/tools@0.1.1), in JavaScript, with no
// Stockade SDK: Stockade serves it as a third contract beside
// `stockade:tool` and plain function exports.

const readOnly = {
  title: undefined,
  readOnlyHint: true,
  destructiveHint: false,
  idempotentHint: true,
  openWorldHint: false,
};

function tool(name, description, input, output) {
  return {
    name,
    inputSchema: JSON.stringify(input),
    options: {
      meta: undefined,
      annotations: readOnly,
      description,
      outputSchema: output === undefined ? undefined : JSON.stringify(output),
      title: undefined,
      icons: undefined,
    },
  };
}

function text(value) {
  return { tag: 'text', val: { text: { tag: 'text', val: value }, options: undefined } };
}

function invalid(message) {
  return { tag: 'invalid-params', val: { code: -32602n, message, data: undefined } };
}

function done(content, structured) {
  return {
    meta: undefined,
    content,
    isError: false,
    structuredContent: structured === undefined ? undefined : JSON.stringify(structured),
  };
}

export const tools = {
  listTools(ctx, request) {
    return {
      meta: undefined,
      nextCursor: undefined,
      tools: [
        tool('reverse', 'Reverses a text.', {
          type: 'object',
          properties: { text: { type: 'string' } },
          required: ['text'],
        }),
        tool(
          'stats',
          'Count, sum and mean of numbers.',
          {
            type: 'object',
            properties: { numbers: { type: 'array', items: { type: 'number' } } },
            required: ['numbers'],
          },
          {
            type: 'object',
            properties: {
              count: { type: 'integer' },
              sum: { type: 'number' },
              mean: { type: ['number', 'null'] },
            },
            required: ['count', 'sum', 'mean'],
          },
        ),
        tool('context', 'Reports the message context the host gave.', { type: 'object', properties: {} }),
        tool('refuse', 'Always answers with an error result.', { type: 'object', properties: {} }),
        tool('spin', 'Loops forever.', { type: 'object', properties: {} }),
      ],
    };
  },

  callTool(ctx, request) {
    let args = {};
    if (request.arguments !== undefined) {
      try {
        args = JSON.parse(request.arguments);
      } catch {
        throw invalid('arguments are not JSON');
      }
    }
    switch (request.name) {
      case 'reverse':
        if (typeof args.text !== 'string') throw invalid('text: expected a string');
        return done([text([...args.text].reverse().join(''))]);
      case 'stats': {
        const numbers = args.numbers;
        if (!Array.isArray(numbers)) throw invalid('numbers: expected an array');
        const sum = numbers.reduce((a, b) => a + b, 0);
        const value = { count: numbers.length, sum, mean: numbers.length ? sum / numbers.length : null };
        return done([text(JSON.stringify(value))], value);
      }
      case 'context':
        return done([
          text(
            JSON.stringify({
              protocol_version: ctx.protocolVersion,
              client_stream: ctx.clientStream !== undefined,
              session: ctx.session !== undefined,
              identity: ctx.identity !== undefined,
              http_context: ctx.httpContext !== undefined,
            }),
          ),
        ]);
      case 'refuse':
        return {
          meta: undefined,
          content: [text('refused: this tool always says no')],
          isError: true,
          structuredContent: undefined,
        };
      case 'spin':
        for (;;) {
          // until the host's fuel or time limit ends the call
        }
      default:
        return undefined;
    }
  },
};
