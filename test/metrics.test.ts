// FrontEndMetrics: the exposition text (series, labels, escaping, the
// histogram) stays the same whatever path a counter takes inside.
import { describe, expect, it } from 'vitest';
import { FrontEndMetrics } from '../src/front/metrics.js';

describe('FrontEndMetrics', () => {
  it('renders every family with its series, labels escaped, histogram cumulative', () => {
    const m = new FrontEndMetrics();
    m.active(1);
    m.active(1);
    m.active(-1);
    m.connection('accepted');
    m.connection('accepted');
    m.connection('rejected');
    m.echRequired();
    m.alertSent('decode_error');
    m.handshakeError('ERR_TIMEOUT');
    m.handshakeError('weird "code"\\\n');
    m.relayed('routes[0]', 'client_to_backend', 10);
    m.relayed('routes[0]', 'client_to_backend', 0);
    m.relayed('routes[0]', 'backend_to_client', 5);
    m.reload(true);
    m.reload(false);
    m.backendConnection('routes[1]', '10.0.0.1:443');
    m.backendConnectFailure('routes[1]', '10.0.0.2:443');
    m.poolExhausted('routes[1]');
    m.handshakeSeconds(0.0005);
    m.handshakeSeconds(0.003);
    m.handshakeSeconds(20);
    m.backendGauges = () => [{ route: 'routes[1]', backend: '10.0.0.1:443', up: true, active: 2 }];
    const text = m.render();
    expect(text).toContain('# TYPE ech_connections_total counter\nech_connections_total{status="accepted"} 2\nech_connections_total{status="rejected"} 1\n');
    expect(text).toContain('\nech_required_alerts_total 1\n');
    expect(text).toContain('\nech_alerts_sent_total{alert="decode_error"} 1\n');
    expect(text).toContain('\nech_handshake_errors_total{reason="ERR_TIMEOUT"} 1\nech_handshake_errors_total{reason="weird \\"code\\"\\\\\\n"} 1\n');
    expect(text).toContain('\nech_relayed_bytes_total{direction="client_to_backend",route="routes[0]"} 10\nech_relayed_bytes_total{direction="backend_to_client",route="routes[0]"} 5\n');
    expect(text).toContain('# TYPE ech_active_connections gauge\nech_active_connections 1\n');
    expect(text).toContain('\nech_reloads_total{result="ok"} 1\nech_reloads_total{result="error"} 1\n');
    expect(text).toContain('\nech_backend_connections_total{backend="10.0.0.1:443",route="routes[1]"} 1\n');
    expect(text).toContain('\nech_backend_connect_failures_total{backend="10.0.0.2:443",route="routes[1]"} 1\n');
    expect(text).toContain('\nech_backend_pool_exhausted_total{route="routes[1]"} 1\n');
    expect(text).toContain('\nech_backend_up{backend="10.0.0.1:443",route="routes[1]"} 1\n');
    expect(text).toContain('\nech_backend_active_connections{backend="10.0.0.1:443",route="routes[1]"} 2\n');
    expect(text).toContain(
      [
        'ech_handshake_duration_seconds_bucket{le="0.001"} 1',
        'ech_handshake_duration_seconds_bucket{le="0.0025"} 1',
        'ech_handshake_duration_seconds_bucket{le="0.005"} 2',
        'ech_handshake_duration_seconds_bucket{le="0.01"} 2',
        'ech_handshake_duration_seconds_bucket{le="0.025"} 2',
        'ech_handshake_duration_seconds_bucket{le="0.05"} 2',
        'ech_handshake_duration_seconds_bucket{le="0.1"} 2',
        'ech_handshake_duration_seconds_bucket{le="0.25"} 2',
        'ech_handshake_duration_seconds_bucket{le="0.5"} 2',
        'ech_handshake_duration_seconds_bucket{le="1"} 2',
        'ech_handshake_duration_seconds_bucket{le="2.5"} 2',
        'ech_handshake_duration_seconds_bucket{le="5"} 2',
        'ech_handshake_duration_seconds_bucket{le="10"} 2',
        'ech_handshake_duration_seconds_bucket{le="+Inf"} 3',
        'ech_handshake_duration_seconds_sum 20.0035',
        'ech_handshake_duration_seconds_count 3',
      ].join('\n'),
    );
    expect(m.value('connections', { status: 'accepted' })).toBe(2);
    expect(m.value('handshakeErrors', { reason: 'weird "code"\\\n' })).toBe(1);
    expect(m.value('active')).toBe(1);
    expect(m.value('echRequired')).toBe(1);
  });

  it('an empty gauge renders 0; counters with many distinct label values all count', () => {
    const m = new FrontEndMetrics();
    expect(m.render()).toContain('# TYPE ech_active_connections gauge\nech_active_connections 0\n');
    for (let round = 0; round < 2; round++) for (let i = 0; i < 1000; i++) m.handshakeError(`E${i}`);
    for (let i = 0; i < 1000; i++) expect(m.value('handshakeErrors', { reason: `E${i}` })).toBe(2);
    expect(m.render().match(/^ech_handshake_errors_total\{/gm)).toHaveLength(1000);
  });
});
