#!/usr/bin/env node
// Parses AsyncAPI documents with the official parser (@asyncapi/parser, pinned in package.json) and prints
// what it found and what it read, as one JSON object on stdout:
//   {"parser": "<version>", "documents": [{"file", "parsed", "diagnostics": [{"severity", "code", "message",
//    "path"}], "channels": [{"id", "address", "messages": [{"id", "name", "properties", "required"}]}],
//    "operations": [{"id", "action", "channels", "messages"}]}]}
// "channels" and "operations" are the parser's own reading (references resolved), so a test can compare it with
// the models the document was generated from: what code generators see. Exit code 0 whenever the parser ran
// (the caller judges the diagnostics), 2 on a usage or I/O error.
// CommonJS, not ESM: NODE_PATH (where tests/asyncapi_parser.py installed the package) only applies to require().
"use strict";

const fs = require("fs");
const { Parser, DiagnosticSeverity } = require("@asyncapi/parser");
const parserVersion = require("@asyncapi/parser/package.json").version;

// The parser reports severities as numbers (Spectral's); names read better in a test failure.
const SEVERITY_NAMES = {
  [DiagnosticSeverity.Error]: "error",
  [DiagnosticSeverity.Warning]: "warning",
  [DiagnosticSeverity.Information]: "information",
  [DiagnosticSeverity.Hint]: "hint",
};

function readMessage(message) {
  const payload = message.payload();
  return {
    id: message.id(),
    name: message.name() || null,
    properties: payload ? Object.keys(payload.properties() || {}).sort() : [],
    required: payload ? [...(payload.required() || [])].sort() : [],
  };
}

function readDocument(document) {
  return {
    channels: document.channels().all().map((channel) => ({
      id: channel.id(),
      address: channel.address(),
      messages: channel.messages().all().map(readMessage),
    })),
    operations: document.operations().all().map((operation) => ({
      id: operation.id(),
      action: operation.action(),
      channels: operation.channels().all().map((channel) => channel.address()),
      messages: operation.messages().all().map((message) => message.id()),
    })),
  };
}

async function parseFile(parser, file) {
  const { document, diagnostics } = await parser.parse(fs.readFileSync(file, "utf8"), { source: file });
  return {
    file,
    parsed: document !== undefined,
    diagnostics: diagnostics.map((d) => ({
      severity: SEVERITY_NAMES[d.severity] || String(d.severity),
      code: String(d.code),
      message: d.message,
      path: (d.path || []).join("/"),
    })),
    ...(document ? readDocument(document) : { channels: [], operations: [] }),
  };
}

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write("usage: node parse.cjs ASYNCAPI_DOCUMENT...\n");
    return 2;
  }
  const parser = new Parser();
  const documents = [];
  for (const file of files) {
    documents.push(await parseFile(parser, file));
  }
  process.stdout.write(JSON.stringify({ parser: parserVersion, documents }));
  return 0;
}

main().then(
  (code) => { process.exitCode = code; },
  (error) => {
    process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
    process.exitCode = 2;
  },
);
