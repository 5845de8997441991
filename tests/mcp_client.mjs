// A real MCP client of troupe's MCP server: the official TypeScript SDK
// (@modelcontextprotocol/sdk, installed by scripts/fetch-mcp-servers.sh),
// driving `troupe mcp serve` over stdio. tests/it/mcp_server.rs runs it and
// checks the JSON report it prints on stdout.
//
// node tests/mcp_client.mjs <sdk dir> <troupe binary> <troupe.toml> <data dir> <job>
import { pathToFileURL } from "node:url";

const [sdk, troupe, config, dataDir, job] = process.argv.slice(2);
const esm = (p) => import(pathToFileURL(`${sdk}/dist/esm/${p}`).href);
const { Client } = await esm("client/index.js");
const { StdioClientTransport } = await esm("client/stdio.js");

const transport = new StdioClientTransport({
  command: troupe,
  args: ["--config", config, "mcp", "serve", "--data-dir", dataDir],
  env: { ...process.env, TROUPE_LOG: "warn" },
  stderr: "inherit",
});
const client = new Client({ name: "troupe-test-client", version: "1.0.0" });
await client.connect(transport);

const text = (result) => (result.content ?? []).map((c) => c.text ?? "").join("\n");
const call = async (name, args) => {
  const result = await client.callTool({ name, arguments: args });
  return { isError: result.isError === true, text: text(result), structured: result.structuredContent ?? null };
};
const report = { server: client.getServerVersion() };

report.tools = (await client.listTools()).tools.map((t) => ({
  name: t.name,
  description: t.description,
  required: t.inputSchema?.required ?? [],
}));
report.write = await call("write_file", { path: "notes/hello.txt", content: "hello from node\n" });
report.read = await call("read_file", { path: "notes/hello.txt" });
report.needsApproval = await call("http_get", { url: "http://127.0.0.1:9/" });
report.unknown = await call("no_such_tool", {});

report.submit = await call("submit_task", { job });
const id = report.submit.structured?.id;
report.states = [];
for (let i = 0; i < 600 && id; i++) {
  const status = await call("task_status", { id });
  const state = status.structured?.state;
  if (report.states.at(-1) !== state) report.states.push(state);
  report.status = status;
  if (["succeeded", "failed", "cancelled"].includes(state)) break;
  await new Promise((r) => setTimeout(r, 200));
}
report.ask = await call("ask", { message: "hello" });

await client.close();
console.log(JSON.stringify(report));
