// Drives Stockade with the TypeScript MCP SDK: lists the tools, then makes
// each call given on the command line, and prints one JSON report on stdout
// for the test to check.
//
// usage: node client.mjs <stockade binary> <config> '<json list of [name, arguments]>'
//    or: node client.mjs <http(s) URL of /mcp> - '<json list>'   (bearer token in STOCKADE_TOKEN)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [target, config, callsJson] = process.argv.slice(2);
const transport = /^https?:/.test(target)
  ? new StreamableHTTPClientTransport(new URL(target), {
      requestInit: { headers: { Authorization: `Bearer ${process.env.STOCKADE_TOKEN}` } },
    })
  : new StdioClientTransport({
      command: target,
      args: ["serve", "--config", config],
      env: { PATH: process.env.PATH ?? "", STOCKADE_LOG: "warn" },
      stderr: "ignore",
    });
const client = new Client({ name: "stockade-ts-test", version: "1.0.0" });
await client.connect(transport);
const listed = await client.listTools();
const calls = [];
for (const [name, args] of JSON.parse(callsJson)) {
  try {
    calls.push({ name, result: await client.callTool({ name, arguments: args }) });
  } catch (error) {
    calls.push({ name, error: { code: error.code, message: error.message } });
  }
}
const report = {
  protocolVersion: transport.protocolVersion ?? client.getServerVersion()?.version ?? null,
  server: client.getServerVersion(),
  tools: listed.tools,
  calls,
};
await client.close();
process.stdout.write(JSON.stringify(report) + "\n");
