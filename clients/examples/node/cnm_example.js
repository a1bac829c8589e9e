// cnm's controller API from Node.js, built from protos/ alone: the .proto files
// are loaded at run time (@grpc/proto-loader), no generated code.
//
//   npm install            # once, in this directory
//   CNM_CONTROLLER=unix:///run/cnm/controller.sock node cnm_example.js [PREFIX]
//
// Creates a network and a sandbox named PREFIX-net / PREFIX-sb, connects them,
// lists networks (with the revision the list reflects), watches from that
// revision, shows how a refusal reads (status code, ErrorInfo reason,
// BadRequest field violations), then removes what it made. Prints one JSON
// object per step on stdout.
"use strict";

const path = require("path");
const grpc = require("@grpc/grpc-js");
const loader = require("@grpc/proto-loader");
const protobuf = require("protobufjs");

const PROTOS = path.resolve(__dirname, "..", "..", "..", "protos");
const LOAD = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };
const pkg = grpc.loadPackageDefinition(
  loader.loadSync("cnm/controller/v1/controller.proto", { ...LOAD, includeDirs: [PROTOS] })
);
// The error details every cnm error carries (google.rpc.Status in the trailer).
const rpc = protobuf.loadSync(
  ["status.proto", "error_details.proto"].map((f) => path.join(PROTOS, "google", "rpc", f))
);

// What a failed call carries besides its message: the ErrorInfo reason to
// branch on and, for a bad field, google.rpc.BadRequest field violations.
function errorDetails(err) {
  const out = { code: grpc.status[err.code], message: err.details, reason: "", fields: {} };
  const raw = err.metadata && err.metadata.get("grpc-status-details-bin")[0];
  if (!raw) return out;
  for (const any of rpc.lookupType("google.rpc.Status").decode(raw).details) {
    const name = any.type_url.split("/").pop();
    const msg = rpc.lookupType(name).decode(any.value);
    if (name === "google.rpc.ErrorInfo") out.reason = msg.reason;
    if (name === "google.rpc.BadRequest") {
      for (const v of msg.fieldViolations) out.fields[v.field] = v.description;
    }
  }
  return out;
}

function call(client, method, request) {
  const deadline = new Date(Date.now() + 15000);
  return new Promise((resolve, reject) =>
    client[method](request, { deadline }, (err, resp) => (err ? reject(err) : resolve(resp)))
  );
}

function target(address) {
  // cnmctl's addresses: unix:///path or HOST:PORT (grpc-js takes both as they are).
  return address || "unix:///run/cnm/controller.sock";
}

async function main() {
  const prefix = process.argv[2] || "node";
  const client = new pkg.cnm.controller.v1.Controller(
    target(process.env.CNM_CONTROLLER),
    grpc.credentials.createInsecure()
  );
  const say = (step, data) => console.log(JSON.stringify({ step, ...data }));
  const net = `${prefix}-net`;
  const sb = `${prefix}-sb`;
  try {
    const created = await call(client, "CreateNetwork", {
      name: net,
      ipam: { configs: [{ subnet: "10.88.0.0/24" }] },
      labels: { example: "node" },
      request_id: `${prefix}-create-net`,
    });
    say("network", { id: created.id, name: created.name, driver: created.driver });

    const listed = await call(client, "ListNetworks", { filter: { labels: ["example=node"] } });
    say("list", { names: listed.networks.map((n) => n.name), revision: listed.revision });

    // Watch from the list's revision: no change after the list is missed.
    const events = [];
    const stream = client.Watch({ since_revision: listed.revision });
    const live = new Promise((resolve, reject) => {
      stream.on("data", (e) => {
        events.push({ type: e.type, name: e.name, revision: e.revision });
        if (e.type === "EVENT_TYPE_ENDPOINT_JOINED") resolve();
      });
      stream.on("error", (err) => (err.code === grpc.status.CANCELLED ? null : reject(err)));
    });

    await call(client, "CreateSandbox", { name: sb, request_id: `${prefix}-create-sb` });
    const ep = await call(client, "Connect", {
      network: net,
      sandbox: sb,
      spec: { ipv4_address: "10.88.0.9" },
      request_id: `${prefix}-connect`,
    });
    say("connect", { ipv4: ep.ipv4_address, state: ep.state, interface: ep.interface_name });
    await live;
    stream.cancel();
    say("watch", { first: events[0].type, types: events.slice(1).map((e) => e.type) });

    try {
      await call(client, "CreateEndpoint", { network: net, spec: { ipv4_address: "not-an-ip" } });
    } catch (err) {
      say("refused", errorDetails(err));
    }
  } finally {
    await call(client, "DeleteSandbox", { id_or_name: sb }).catch(() => null);
    await call(client, "DeleteNetwork", { id_or_name: net }).catch(() => null);
    say("cleanup", {});
    client.close();
  }
}

main().catch((err) => {
  console.error(`Error: ${err.details || err.message}`);
  process.exit(1);
});
