/**
 * A small authoritative DNS server for browser tests, on dns-packet.
 *
 * It answers, for the test names it is given:
 *   A      the configured IPv4 address
 *   AAAA   NODATA (NOERROR, no answer, SOA in authority)
 *   HTTPS  (type 65) RDATA built by our own `httpsRecordRdata`: owner NAME for
 *          port 443, `_P._https.NAME` for any other port P (with an explicit
 *          TargetName; Chromium ignores `.` there)
 * and NXDOMAIN for everything else (Chromium looks up a few Google names).
 * Every query is logged, so tests can assert what the browser asked for.
 *
 * In tests it runs in the test process on sockets bound inside a network
 * namespace (see netns.ts: `ns.bind([{proto:'udp',port:53},{proto:'tcp',port:53}])`).
 *
 * Standalone (e.g. to poke Chromium by hand), compile it first; Node 20
 * cannot run .ts:
 *   npx tsc --outDir .cache/peers --rootDir . --module nodenext --target es2022 \
 *       --skipLibCheck --types node test/peers/dns-responder.ts
 *   node .cache/peers/test/peers/dns-responder.js --listen 127.0.0.1:5353 --zone zone.json
 * zone.json: [{"name":"private.test","address":"10.213.81.1",
 *              "https":[{"port":443,"alpn":["http/1.1"],"echConfigList":"<base64>"}]}]
 */
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server as TcpServer, type Socket } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as dnsPacket from 'dns-packet';
import { httpsRecordOwner, httpsRecordRdata, type HttpsRecordOptions } from '../../src/dns/https-record.js';

const HTTPS_TYPE = 'UNKNOWN_65'; // dns-packet 5.6 has no name for type 65

export interface TestHttpsRecord extends Omit<HttpsRecordOptions, 'name' | 'echConfigList'> {
  /** ECHConfigList bytes, or base64 (the `ech` SvcParam). */
  echConfigList: Uint8Array | string;
}

export interface TestHost {
  /** e.g. `private.test` */
  name: string;
  /** IPv4 address for A (normally the namespace's server address). */
  address: string;
  /** HTTPS records, one per port. */
  https?: TestHttpsRecord[];
}

interface Owner {
  a: string[];
  https: Uint8Array[];
}

export interface DnsZone {
  /** lower-case owner names without the trailing dot */
  owners: Map<string, Owner>;
  ttl: number;
}

export interface QueryLogEntry {
  name: string;
  /** 'A', 'AAAA', 'HTTPS', ... */
  type: string;
  rcode: 'NOERROR' | 'NXDOMAIN' | 'FORMERR';
  answers: number;
  transport: 'udp' | 'tcp';
  /** The UDP answer did not fit the requestor's payload size: sent with TC and no answers. */
  truncated?: boolean;
}

function bare(name: string): string {
  return name.replace(/\.$/, '').toLowerCase();
}

function bytesOf(v: Uint8Array | string): Uint8Array {
  return typeof v === 'string' ? new Uint8Array(Buffer.from(v, 'base64')) : v;
}

export function buildZone(hosts: TestHost[], ttl = 30): DnsZone {
  const owners = new Map<string, Owner>();
  const get = (n: string) => {
    let o = owners.get(n);
    if (!o) owners.set(n, (o = { a: [], https: [] }));
    return o;
  };
  for (const h of hosts) {
    get(bare(h.name)).a.push(h.address);
    for (const r of h.https ?? []) {
      const opts: HttpsRecordOptions = { ...r, name: h.name, echConfigList: bytesOf(r.echConfigList) };
      get(bare(httpsRecordOwner(opts))).https.push(httpsRecordRdata(opts));
    }
  }
  return { owners, ttl };
}

function typeName(t: string): string {
  return t === HTTPS_TYPE ? 'HTTPS' : t;
}

/** Answer one query message. Pure: the same bytes in give the same bytes out. */
export function answerQuery(query: Uint8Array, zone: DnsZone, transport: 'udp' | 'tcp' = 'udp'): { response: Buffer; log: QueryLogEntry } {
  let q: dnsPacket.Packet;
  try {
    q = dnsPacket.decode(Buffer.from(query));
  } catch {
    const id = query.length >= 2 ? (query[0]! << 8) | query[1]! : 0;
    const formerr = dnsPacket.encode({ id, type: 'response', flags: dnsPacket.AUTHORITATIVE_ANSWER | 1 /* FORMERR */, questions: [] });
    return { response: formerr, log: { name: '', type: '', rcode: 'FORMERR', answers: 0, transport } };
  }
  const question = q.questions?.[0];
  const base = {
    id: q.id ?? 0,
    type: 'response' as const,
    questions: question ? [question] : [],
  };
  // RD copied, RA set: to a stub resolver we are its recursive server.
  const rd = (q.flags ?? 0) & dnsPacket.RECURSION_DESIRED;
  const flagsFor = (rcode: number) => dnsPacket.AUTHORITATIVE_ANSWER | dnsPacket.RECURSION_AVAILABLE | rd | rcode;
  const additionals: dnsPacket.Answer[] = (q.additionals ?? []).some((a) => a.type === 'OPT')
    ? [{ type: 'OPT', name: '.', udpPayloadSize: 1232, flags: 0, options: [] } as unknown as dnsPacket.Answer]
    : [];
  if (!question) {
    return {
      response: dnsPacket.encode({ ...base, flags: flagsFor(1), additionals }),
      log: { name: '', type: '', rcode: 'FORMERR', answers: 0, transport },
    };
  }
  const name = bare(question.name);
  const owner = zone.owners.get(name);
  const emptyNonTerminal = !owner && [...zone.owners.keys()].some((o) => o.endsWith(`.${name}`));
  const soa: dnsPacket.Answer = {
    name: name.split('.').slice(-1)[0] || '.',
    type: 'SOA',
    class: 'IN',
    ttl: zone.ttl,
    data: { mname: 'ns.test', rname: 'hostmaster.test', serial: 1, refresh: 60, retry: 60, expire: 60, minimum: zone.ttl },
  };
  if (!owner && !emptyNonTerminal) {
    return {
      response: dnsPacket.encode({ ...base, flags: flagsFor(3), authorities: [soa], additionals }),
      log: { name, type: typeName(question.type), rcode: 'NXDOMAIN', answers: 0, transport },
    };
  }
  const answers: dnsPacket.Answer[] = [];
  const qtype: string = question.type; // may be 'UNKNOWN_65', which the typings do not list
  if (owner && (qtype === 'A' || qtype === 'ANY')) {
    for (const a of owner.a) answers.push({ name: question.name, type: 'A', class: 'IN', ttl: zone.ttl, data: a });
  }
  if (owner && (qtype === HTTPS_TYPE || qtype === 'ANY')) {
    for (const rdata of owner.https) {
      answers.push({ name: question.name, type: HTTPS_TYPE, class: 'IN', ttl: zone.ttl, data: Buffer.from(rdata) } as unknown as dnsPacket.Answer);
    }
  }
  const response = dnsPacket.encode({ ...base, flags: flagsFor(0), answers, authorities: answers.length ? [] : [soa], additionals });
  // RFC 1035 §4.2.1 / RFC 6891 §6.2.5: over UDP, a response larger than the
  // requestor's payload size (512 without EDNS) is truncated: TC set, no
  // answers, and the client retries over TCP (post-quantum ECHConfigLists
  // make HTTPS records of several kilobytes).
  const opt = (q.additionals ?? []).find((a) => a.type === 'OPT') as { udpPayloadSize?: number } | undefined;
  const limit = opt ? Math.max(512, opt.udpPayloadSize ?? 512) : 512;
  if (transport === 'udp' && response.length > limit) {
    return {
      response: dnsPacket.encode({ ...base, flags: flagsFor(0) | dnsPacket.TRUNCATED_RESPONSE, answers: [], additionals }),
      log: { name, type: typeName(question.type), rcode: 'NOERROR', answers: 0, transport, truncated: true },
    };
  }
  return {
    response,
    log: { name, type: typeName(question.type), rcode: 'NOERROR', answers: answers.length, transport },
  };
}

/** Serves a zone on any number of UDP sockets and TCP listeners. */
export class DnsResponder extends EventEmitter {
  readonly queries: QueryLogEntry[] = [];
  private readonly udp = new Set<UdpSocket>();
  private readonly tcp = new Set<TcpServer>();
  private readonly conns = new Set<Socket>();
  /** Names whose HTTPS record has been answered (with records). */
  private readonly httpsAnswered = new Set<string>();
  /**
   * Hold UDP A answers for a name until its HTTPS record has been answered
   * (at most this many ms; 0: never hold). Chromium starts the connection
   * once A arrives and waits only a short extra time for HTTPS: an HTTPS
   * record that needs the TCP retry (post-quantum ECHConfigLists) can miss
   * that window on a loaded machine, and the browser then sends GREASE.
   */
  holdAddressUntilHttpsMs = 0;

  constructor(public zone: DnsZone) {
    super();
  }

  private record(log: QueryLogEntry): void {
    this.queries.push(log);
    if (log.type === 'HTTPS' && log.answers > 0) this.httpsAnswered.add(log.name.toLowerCase().replace(/\.$/, ''));
    this.emit('query', log);
  }

  /** Resolves when an A answer for `name` may go out (see {@link holdAddressUntilHttpsMs}). */
  private async addressGate(log: QueryLogEntry): Promise<void> {
    const name = log.name.toLowerCase().replace(/\.$/, '');
    if (this.holdAddressUntilHttpsMs <= 0 || log.type !== 'A' || log.answers === 0) return;
    const owner = this.zone.owners.get(name);
    if (!owner || owner.https.length === 0) return;
    const end = Date.now() + this.holdAddressUntilHttpsMs;
    while (!this.httpsAnswered.has(name) && Date.now() < end) await new Promise((r) => setTimeout(r, 10));
    // Then a little longer, so the HTTPS answer (TCP) is surely processed
    // before the A answer (UDP) arrives.
    await new Promise((r) => setTimeout(r, 200));
  }

  serveUdp(socket: UdpSocket): this {
    this.udp.add(socket);
    socket.on('message', (msg: Buffer, rinfo: RemoteInfo) => {
      const { response, log } = answerQuery(msg, this.zone, 'udp');
      this.record(log);
      void this.addressGate(log).then(() => socket.send(response, rinfo.port, rinfo.address));
    });
    socket.on('error', (e) => this.emit('warning', e));
    return this;
  }

  serveTcp(server: TcpServer): this {
    this.tcp.add(server);
    server.on('connection', (conn) => {
      this.conns.add(conn);
      conn.setTimeout(10_000, () => conn.destroy());
      conn.on('close', () => this.conns.delete(conn));
      conn.on('error', () => undefined);
      let buf = Buffer.alloc(0);
      conn.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 2) {
          const len = buf.readUInt16BE(0);
          if (buf.length < 2 + len) break;
          const { response, log } = answerQuery(buf.subarray(2, 2 + len), this.zone, 'tcp');
          buf = buf.subarray(2 + len);
          this.record(log);
          const framed = Buffer.alloc(2 + response.length);
          framed.writeUInt16BE(response.length, 0);
          response.copy(framed, 2);
          conn.write(framed);
        }
      });
    });
    return this;
  }

  /** Resolves with the first logged query (past or future) matching `pred`. */
  waitForQuery(pred: (q: QueryLogEntry) => boolean, timeoutMs = 15_000): Promise<QueryLogEntry> {
    const seen = this.queries.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const onQuery = (q: QueryLogEntry) => {
        if (!pred(q)) return;
        clearTimeout(t);
        this.off('query', onQuery);
        resolve(q);
      };
      const t = setTimeout(() => {
        this.off('query', onQuery);
        reject(new Error(`no matching DNS query within ${timeoutMs} ms; saw ${JSON.stringify(this.queries)}`));
      }, timeoutMs);
      this.on('query', onQuery);
    });
  }

  close(): void {
    for (const c of this.conns) c.destroy();
    for (const s of this.udp) s.close();
    for (const s of this.tcp) s.close();
    this.udp.clear();
    this.tcp.clear();
  }
}

// ----------------------------------------------------------- standalone use

async function main(argv: string[]): Promise<void> {
  const arg = (flag: string) => {
    const i = argv.indexOf(flag);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const listen = arg('--listen') ?? '127.0.0.1:5353';
  const zoneFile = arg('--zone');
  if (!zoneFile) {
    process.stderr.write('usage: dns-responder --listen HOST:PORT --zone zone.json\n');
    process.exit(2);
  }
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m) throw new Error(`--listen wants HOST:PORT, got ${listen}`);
  const [host, port] = [m[1]!, Number(m[2])];
  const hosts = JSON.parse(readFileSync(zoneFile, 'utf8')) as TestHost[];
  const responder = new DnsResponder(buildZone(hosts));
  const udp = createSocket('udp4');
  await new Promise<void>((res) => udp.bind(port, host, res));
  const tcp = createServer();
  await new Promise<void>((res) => tcp.listen(port, host, res));
  responder.serveUdp(udp).serveTcp(tcp);
  responder.on('query', (q: QueryLogEntry) => process.stdout.write(`${JSON.stringify(q)}\n`));
  process.stdout.write(`${JSON.stringify({ listening: `${host}:${port}`, names: [...responder.zone.owners.keys()] })}\n`);
  const stop = () => {
    responder.close();
    process.exit(0);
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolvePath(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`dns-responder: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
