// Drives tenant-mcp's management MCP server with the official MCP TypeScript SDK
// (@modelcontextprotocol/sdk, pinned in package.json), as an agent's client would.
//
// Usage: node admin_client.mjs URL < steps.json
//
// Standard input is a JSON list of steps, each {"token", "tool", "arguments"}; a step without
// "tool" lists the tools. Each step opens its own session with `Authorization: Bearer <token>`.
// The SDK checks every `structuredContent` against the tool's `outputSchema` with its own Ajv
// (draft-07, as it ships); this script checks each again with Ajv's JSON Schema 2020-12
// validator in strict mode, the dialect the schemas declare, and compiles every schema there.
//
// Prints one JSON object:
//   {"tools": [{name, title, annotations, inputSchema, outputSchema}],
//    "schemaProblems": ["tool: input/output: what Ajv 2020 strict refused"],
//    "protocolVersion": the version the session negotiated,
//    "warnings": [what the SDK or Ajv printed on the console],
//    "results": [{"ok": true, "value", "valid", "validationErrors"} |
//                {"ok": false, "isError": true, "message", "data", "valid", "validationErrors"} |
//                {"ok": false, "code", "message"}]}

import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { McpError } from "@modelcontextprotocol/sdk/types.js";
import Ajv2020Module from "ajv/dist/2020.js";
import addFormatsModule from "ajv-formats";

const Ajv2020 = Ajv2020Module.default ?? Ajv2020Module;
const addFormats = addFormatsModule.default ?? addFormatsModule;

// Ajv reports an unknown format (`unknown format "uint64" ignored`) on the console: keep it.
const warnings = [];
for (const level of ["warn", "error", "log"]) {
  const original = console[level];
  console[level] = (...args) => {
    warnings.push(args.map(String).join(" "));
    original.apply(console, args);
  };
}

function strictAjv() {
  // strict: unknown keywords and formats are errors, not warnings. strictTypes and
  // strictRequired stay off: they judge how a schema is written, not what it means.
  const ajv = new Ajv2020({ strict: true, strictTypes: false, strictRequired: false, allErrors: true });
  addFormats(ajv);
  return ajv;
}

async function connect(url, token) {
  const transport = new StreamableHTTPClientTransport(new URL(url), {
    requestInit: { headers: { Authorization: `Bearer ${token}` } },
  });
  const client = new Client({ name: "tenant-mcp-e2e-typescript", version: "0.0.0" });
  await client.connect(transport);
  return { client, transport };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function main() {
  const url = process.argv[2];
  const steps = await readStdin();
  const report = { tools: [], schemaProblems: [], protocolVersion: null, warnings, results: [] };
  const validators = new Map();
  for (const step of steps) {
    const { client, transport } = await connect(url, step.token);
    report.protocolVersion = transport.protocolVersion ?? report.protocolVersion;
    try {
      if (!step.tool) {
        const { tools } = await client.listTools();
        report.tools = tools.map((t) => ({
          name: t.name,
          title: t.title,
          annotations: t.annotations,
          inputSchema: t.inputSchema,
          outputSchema: t.outputSchema,
        }));
        const ajv = strictAjv();
        for (const t of tools) {
          for (const [which, schema] of [["input", t.inputSchema], ["output", t.outputSchema]]) {
            try {
              const validate = ajv.compile(schema);
              if (which === "output") validators.set(t.name, validate);
            } catch (e) {
              report.schemaProblems.push(`${t.name}: ${which}: ${e.message}`);
            }
          }
        }
        continue;
      }
      let result;
      try {
        // The SDK needs the tool list to check results against output schemas.
        await client.listTools();
        result = await client.callTool({ name: step.tool, arguments: step.arguments ?? {} });
      } catch (e) {
        report.results.push({
          ok: false,
          code: e instanceof McpError ? e.code : null,
          message: String(e.message ?? e),
        });
        continue;
      }
      const validate = validators.get(step.tool);
      const checked = {};
      if (validate && result.structuredContent !== undefined) {
        checked.valid = validate(result.structuredContent);
        checked.validationErrors = validate.errors ?? [];
      }
      if (result.isError) {
        const text = (result.content ?? []).map((c) => c.text ?? "").join(" ");
        report.results.push({ ok: false, isError: true, message: text, data: result.structuredContent ?? null, ...checked });
      } else {
        report.results.push({ ok: true, value: result.structuredContent ?? null, ...checked });
      }
    } finally {
      await transport.terminateSession().catch(() => {});
      await client.close();
    }
  }
  process.stdout.write(JSON.stringify(report));
}

main().catch((e) => {
  process.stderr.write(`${e.stack ?? e}\n`);
  process.exit(1);
});
