// Drives `stockade serve` over stdio with the TypeScript MCP SDK: lists the
// tools, then makes each call given on the command line, and prints one JSON
// report on stdout for the test to check.
//
// usage: node client.mjs <stockade binary> <config> '<json list of [name, arguments]>'
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";

const [binary, config, callsJson] = process.argv.slice(2);
const transport = new StdioClientTransport({
  command: binary,
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
