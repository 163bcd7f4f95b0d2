// Socket binder for test/peers/netns.ts. Runs INSIDE a network namespace
// (`ip netns exec NS node netns-bind.mjs '<json specs>'`), binds the requested
// TCP listeners / UDP sockets there, hands each one to the parent process over
// the Node IPC channel, and exits once the parent has them all.
//
// The sockets stay in the namespace they were created in, so the parent (a
// vitest worker running TypeScript) can serve DNS, capture ClientHellos or run
// the real TLS server on them without any compiled child script.
//
// Plain ESM JavaScript on purpose: it must run with bare `node` on a fresh
// clone (Node 20 cannot run .ts files).
import net from 'node:net';
import dgram from 'node:dgram';

const LIFETIME_MS = 20_000;

function fail(message, code) {
  process.stderr.write(`netns-bind: ${message}\n`);
  process.exit(code);
}

if (typeof process.send !== 'function') fail('must be spawned with an IPC channel (stdio "ipc")', 2);
setTimeout(() => fail(`parent did not take the sockets within ${LIFETIME_MS} ms`, 3), LIFETIME_MS);
process.on('disconnect', () => process.exit(0));
process.on('message', (m) => {
  if (m === 'done') process.exit(0);
});

/** @type {Array<{ proto: 'tcp' | 'udp'; host: string; port: number }>} */
let specs;
try {
  specs = JSON.parse(process.argv[2] ?? '');
  if (!Array.isArray(specs)) throw new Error('not an array');
} catch (e) {
  fail(`bad socket spec argument: ${e instanceof Error ? e.message : e}`, 2);
}

function bindOne(spec) {
  return new Promise((resolve, reject) => {
    if (spec.proto === 'tcp') {
      const server = net.createServer();
      server.once('error', reject);
      server.listen({ host: spec.host, port: spec.port, exclusive: true }, () => resolve(server));
    } else if (spec.proto === 'udp') {
      const socket = dgram.createSocket('udp4');
      socket.once('error', reject);
      socket.bind({ address: spec.host, port: spec.port, exclusive: true }, () => resolve(socket));
    } else {
      reject(new Error(`unknown protocol ${spec.proto}`));
    }
  });
}

for (const [index, spec] of specs.entries()) {
  let handle;
  try {
    handle = await bindOne(spec);
  } catch (e) {
    // The parent answers 'done' (or disconnects) and this process exits.
    process.send({ index, error: `${spec.proto} ${spec.host}:${spec.port}: ${e instanceof Error ? e.message : e}` });
    break;
  }
  const address = handle.address();
  process.send({ index, proto: spec.proto, address: address.address, port: address.port }, handle);
}
