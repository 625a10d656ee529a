// A wasmcp tools component that keeps state in a wasmcp host interface
// (`wasmcp:sessions-probe/session-store`). Stockade offers no such host
// state: loading this component must fail with the import named.

import { get } from 'wasmcp:sessions-probe/session-store@0.1.0';

export const tools = {
  listTools() {
    return { meta: undefined, nextCursor: undefined, tools: [] };
  },
  callTool(ctx, request) {
    const seen = get(request.name) ?? 'nothing';
    return {
      meta: undefined,
      content: [{ tag: 'text', val: { text: { tag: 'text', val: seen }, options: undefined } }],
      isError: false,
      structuredContent: undefined,
    };
  },
};
