// Shows the transport-free decryption core inside a plain TCP server: read the
// client's first flight (however it is split into records and reads), decrypt
// ClientHelloOuter with the key set, and report what the server learnt. A load
// balancer would route on `innerServerName` here.
//
// Run: npx tsx examples/decrypt-first-flight.ts   (in this repo after `npm run build`: 'ech-server'
// resolves to the package itself; in an app, after `npm install ech-server`)
import { createServer, connect } from 'node:net';
import { EchKeySet, EchError, decryptClientHello, generateEchKey, readFirstHandshakeMessage } from 'ech-server';
// the client side, to have something to decrypt: an ECH ClientHello in TLS records
import { buildEchClientHello, createEchSealer } from 'ech-server/ech';
import { ContentType, writeRecords } from 'ech-server/wire';

export async function main(): Promise<string> {
  const key = generateEchKey({ publicName: 'cover.example', maximumNameLength: 32 });
  const keys = new EchKeySet([key]);

  const server = createServer((socket) => {
    let buf = Buffer.alloc(0);
    socket.on('data', async (chunk) => {
      buf = Buffer.concat([buf, chunk]);
      try {
        const first = readFirstHandshakeMessage(buf);
        if (!first) return; // wait for more bytes
        socket.pause();
        const r = await decryptClientHello(first.message.raw, keys);
        const seen = r.status === 'accepted' ? `accepted, inner SNI ${r.innerServerName}` : `${r.status}, SNI ${r.outerServerName}`;
        socket.end(seen);
      } catch (e) {
        socket.end(e instanceof EchError ? `error: ${e.alert}` : 'error');
      }
    });
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const port = (server.address() as { port: number }).port;

  const hello = await buildEchClientHello(
    { serverName: 'hidden.example', alpn: ['h2'], keyShares: [{ group: 0x1d, keyExchange: new Uint8Array(32).fill(9) }] },
    { config: key.config, sealer: createEchSealer },
  );
  const answer = await new Promise<string>((res, rej) => {
    const c = connect(port, '127.0.0.1', () => {
      // split into small records to show reassembly
      c.write(writeRecords(ContentType.handshake, hello.outerMessage, 0x0301, 200));
    });
    let text = '';
    c.on('data', (d) => (text += d.toString()));
    c.on('end', () => res(text));
    c.on('error', rej);
  });
  server.close();
  return answer;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main().then((a) => console.log(`server: ${a}`));
}
