/*
 * BoringSSL peer harness for ech-server tests.
 *
 * Built against Debian's android-libboringssl (an independent ECH
 * implementation). One binary, three modes; every mode prints JSON lines on
 * stdout (one per result) and human diagnostics on stderr.
 *
 *   client --connect HOST:PORT --sni NAME [--ech-config-list B64] [--grease]
 *          [--alpn a,b] [--ca FILE] [--groups X25519:P-256] [--ed25519]
 *          [--send DATA | --send-b64 B64] [--read] [--retry] [--timeout SEC]
 *          [--count N [--resume] [--connect-alt HOST:PORT]]
 *     --count N: N connections in this one process (a load generator: no
 *     process start-up per handshake), one summary JSON line at the end
 *     {"count","handshakes","echAccepted","echRejected","resumed","ms"};
 *     --resume: each connection offers the newest session ticket (PSK);
 *     --connect-alt: every second connection goes to this address instead
 *     (two servers taking alternate connections).
 *   marshal-config --public-name NAME --config-id N [--max-name-len N]
 *   server --listen HOST:PORT --cert FILE --key FILE
 *          [--ech-key B64PRIV --ech-config B64CONFIG]... [--all-retry]
 *          [--groups P-256] [--alpn a,b] [--once] [--no-echo]
 *          [--timeout SEC] [--lifetime SEC]
 *
 * Build:
 *   gcc -O2 -I/usr/include/android harness.c -L/usr/lib/x86_64-linux-gnu/android \
 *       -Wl,-rpath,/usr/lib/x86_64-linux-gnu/android -lssl -lcrypto
 *
 * Private keys are never printed except by marshal-config, whose whole point
 * is to hand a freshly generated test key to the caller.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/base64.h>
#include <openssl/err.h>
#include <openssl/hpke.h>
#include <openssl/mem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#define MAX_ECH_KEYS 16
#define TLSEXT_TYPE_ech_codepoint 0xfe0d

static int g_timeout_sec = 10;

/* ------------------------------------------------------------------ utils */

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "harness: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  /* A usage/setup error still yields one JSON line so the caller can parse. */
  printf("{\"fatal\":true}\n");
  fflush(stdout);
  exit(2);
}

static void *xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (!p) die("out of memory");
  return p;
}

/* Growable string buffer used to build JSON. */
typedef struct {
  char *buf;
  size_t len, cap;
} sbuf;

static void sb_reserve(sbuf *s, size_t extra) {
  if (s->len + extra + 1 <= s->cap) return;
  size_t ncap = s->cap ? s->cap : 256;
  while (ncap < s->len + extra + 1) ncap *= 2;
  char *n = realloc(s->buf, ncap);
  if (!n) die("out of memory");
  s->buf = n;
  s->cap = ncap;
}

static void sb_putn(sbuf *s, const char *p, size_t n) {
  sb_reserve(s, n);
  memcpy(s->buf + s->len, p, n);
  s->len += n;
  s->buf[s->len] = 0;
}

static void sb_puts(sbuf *s, const char *p) { sb_putn(s, p, strlen(p)); }

static void sb_printf(sbuf *s, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
  sb_putn(s, tmp, (size_t)n);
}

/* JSON string literal. UTF-8 sequences pass through; any other byte is
 * mapped to \u00XX so the output is always valid JSON (the *B64 fields carry
 * the exact bytes). */
static void sb_json_str(sbuf *s, const uint8_t *p, size_t n) {
  sb_putn(s, "\"", 1);
  size_t i = 0;
  while (i < n) {
    uint8_t c = p[i];
    if (c == '"' || c == '\\') {
      char e[2] = {'\\', (char)c};
      sb_putn(s, e, 2);
      i++;
    } else if (c < 0x20 || c == 0x7f) {
      sb_printf(s, "\\u%04x", c);
      i++;
    } else if (c < 0x80) {
      sb_putn(s, (const char *)&c, 1);
      i++;
    } else {
      /* Pass one well-formed UTF-8 sequence through (lead byte and
       * continuation bytes only; overlongs beyond C0/C1 are not checked). */
      size_t need = (c >= 0xf0 && c <= 0xf4) ? 3 : (c >= 0xe0 && c <= 0xef) ? 2
                    : (c >= 0xc2 && c <= 0xdf) ? 1 : 0;
      int ok = need > 0 && i + need < n;
      for (size_t k = 1; ok && k <= need; k++)
        if ((p[i + k] & 0xc0) != 0x80) ok = 0;
      if (ok) {
        sb_putn(s, (const char *)p + i, need + 1);
        i += need + 1;
      } else {
        sb_printf(s, "\\u%04x", c);
        i++;
      }
    }
  }
  sb_putn(s, "\"", 1);
}

static void sb_json_cstr(sbuf *s, const char *str) {
  if (!str) {
    sb_puts(s, "null");
    return;
  }
  sb_json_str(s, (const uint8_t *)str, strlen(str));
}

static char *b64_encode(const uint8_t *in, size_t len) {
  size_t out_len;
  if (!EVP_EncodedLength(&out_len, len)) die("base64 length overflow");
  char *out = xmalloc(out_len);
  EVP_EncodeBlock((uint8_t *)out, in, len);
  return out;
}

static void sb_json_b64(sbuf *s, const uint8_t *p, size_t n) {
  char *b = b64_encode(p, n);
  sb_json_cstr(s, b);
  free(b);
}

static uint8_t *b64_decode(const char *in, size_t *out_len, const char *what) {
  size_t max;
  size_t in_len = strlen(in);
  if (!EVP_DecodedLength(&max, in_len)) die("bad base64 in %s", what);
  uint8_t *out = xmalloc(max);
  if (!EVP_DecodeBase64(out, out_len, max, (const uint8_t *)in, in_len))
    die("bad base64 in %s", what);
  return out;
}

/* "h2,http/1.1" -> ALPN wire format. */
static uint8_t *alpn_wire(const char *list, size_t *out_len) {
  size_t n = strlen(list);
  uint8_t *out = xmalloc(n + 1);
  size_t o = 0;
  const char *p = list;
  while (*p) {
    const char *comma = strchr(p, ',');
    size_t l = comma ? (size_t)(comma - p) : strlen(p);
    if (l == 0 || l > 255) die("bad ALPN list '%s'", list);
    out[o++] = (uint8_t)l;
    memcpy(out + o, p, l);
    o += l;
    p += l;
    if (*p == ',') p++;
  }
  *out_len = o;
  return out;
}

static void split_hostport(const char *hp, char **host, char **port) {
  const char *colon = strrchr(hp, ':');
  if (!colon) die("expected HOST:PORT, got '%s'", hp);
  size_t hl = (size_t)(colon - hp);
  const char *h = hp;
  if (hl >= 2 && hp[0] == '[' && hp[hl - 1] == ']') {
    h = hp + 1;
    hl -= 2;
  }
  *host = xmalloc(hl + 1);
  memcpy(*host, h, hl);
  (*host)[hl] = 0;
  *port = strdup(colon + 1);
}

/* BoringSSL's curve names are case-sensitive ("X25519", "P-256"); accept
 * any case by retrying with the upper-cased list. */
static int set_groups(SSL_CTX *ctx, const char *groups) {
  if (SSL_CTX_set1_curves_list(ctx, groups)) return 1;
  ERR_clear_error();
  char *up = strdup(groups);
  for (char *q = up; *q; q++)
    if (*q >= 'a' && *q <= 'z') *q = (char)(*q - 'a' + 'A');
  int ok = SSL_CTX_set1_curves_list(ctx, up);
  free(up);
  return ok;
}

static void set_sock_timeouts(int fd) {
  struct timeval tv = {.tv_sec = g_timeout_sec, .tv_usec = 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* --------------------------------------------------- per-connection state */

typedef struct {
  int alert_sent;      /* -1 if none */
  int alert_recv;      /* -1 if none */
  int handshake_done;  /* SSL_CB_HANDSHAKE_DONE seen */
  int close_notify_recv;
  /* server: what the ClientHello the handshake used carried */
  int ch_seen;
  int ch_ech_type; /* -1 absent, 0 outer, 1 inner, other: raw byte */
  char ch_sni[256];
} conn_state;

static conn_state g_conn;

static void reset_conn_state(void) {
  memset(&g_conn, 0, sizeof g_conn);
  g_conn.alert_sent = -1;
  g_conn.alert_recv = -1;
  g_conn.ch_ech_type = -1;
}

static void info_cb(const SSL *ssl, int type, int value) {
  (void)ssl;
  /* close_notify is an orderly end, not an error: tracked separately. */
  if (type == SSL_CB_READ_ALERT) {
    if ((value & 0xff) == SSL_AD_CLOSE_NOTIFY)
      g_conn.close_notify_recv = 1;
    else
      g_conn.alert_recv = value & 0xff;
  } else if (type == SSL_CB_WRITE_ALERT) {
    if ((value & 0xff) != SSL_AD_CLOSE_NOTIFY) g_conn.alert_sent = value & 0xff;
  } else if (type == SSL_CB_HANDSHAKE_DONE) {
    g_conn.handshake_done = 1;
  }
}

static void sb_alert(sbuf *s, const char *key, int alert) {
  sb_printf(s, ",\"%s\":", key);
  if (alert < 0) {
    sb_puts(s, "null");
  } else {
    sb_printf(s, "{\"code\":%d,\"name\":", alert);
    sb_json_cstr(s, SSL_alert_desc_string_long(alert));
    sb_puts(s, "}");
  }
}

/* Captures the first queued OpenSSL error (and drains the queue to stderr). */
typedef struct {
  uint32_t packed;
  char text[256];
  char reason[128];
} err_info;

static void capture_error(err_info *e, const char *ctx_what, int ssl_err, int ret) {
  memset(e, 0, sizeof *e);
  uint32_t first = 0;
  uint32_t code;
  while ((code = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(code, buf, sizeof buf);
    fprintf(stderr, "harness: %s: %s\n", ctx_what, buf);
    if (!first) first = code;
  }
  e->packed = first;
  if (first) {
    ERR_error_string_n(first, e->text, sizeof e->text);
    const char *r = ERR_reason_error_string(first);
    snprintf(e->reason, sizeof e->reason, "%s", r ? r : "UNKNOWN");
  } else if (ssl_err == SSL_ERROR_SYSCALL) {
    if (ret == 0 || errno == 0) {
      snprintf(e->text, sizeof e->text, "unexpected EOF");
      snprintf(e->reason, sizeof e->reason, "EOF");
    } else {
      snprintf(e->text, sizeof e->text, "syscall: %s", strerror(errno));
      snprintf(e->reason, sizeof e->reason, "%s",
               (errno == EAGAIN || errno == EWOULDBLOCK) ? "TIMEOUT" : "SYSCALL");
    }
  } else if (ssl_err == SSL_ERROR_ZERO_RETURN) {
    snprintf(e->text, sizeof e->text, "close_notify");
    snprintf(e->reason, sizeof e->reason, "CLOSE_NOTIFY");
  } else {
    snprintf(e->text, sizeof e->text, "SSL_get_error=%d", ssl_err);
    snprintf(e->reason, sizeof e->reason, "SSL_ERROR_%d", ssl_err);
  }
}

static void sb_error(sbuf *s, const err_info *e) {
  sb_puts(s, ",\"error\":");
  if (!e->text[0] && g_conn.alert_recv < 0 && g_conn.alert_sent < 0) {
    sb_puts(s, "null");
  } else {
    char full[512];
    size_t o = (size_t)snprintf(full, sizeof full, "%s", e->text[0] ? e->text : "no error");
    if (g_conn.alert_recv >= 0 && o < sizeof full)
      o += (size_t)snprintf(full + o, sizeof full - o, "; alert received %s(%d)",
                            SSL_alert_desc_string_long(g_conn.alert_recv), g_conn.alert_recv);
    if (g_conn.alert_sent >= 0 && o < sizeof full)
      snprintf(full + o, sizeof full - o, "; alert sent %s(%d)",
               SSL_alert_desc_string_long(g_conn.alert_sent), g_conn.alert_sent);
    sb_json_cstr(s, full);
  }
  sb_puts(s, ",\"errorReason\":");
  sb_json_cstr(s, e->reason[0] ? e->reason : NULL);
  sb_alert(s, "alertSent", g_conn.alert_sent);
  sb_alert(s, "alertReceived", g_conn.alert_recv);
}

static void sb_session_params(sbuf *s, SSL *ssl) {
  const uint8_t *alpn = NULL;
  unsigned alpn_len = 0;
  SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
  sb_puts(s, ",\"alpn\":");
  if (alpn_len)
    sb_json_str(s, alpn, alpn_len);
  else
    sb_puts(s, "null");
  const SSL_CIPHER *c = SSL_get_current_cipher(ssl);
  sb_puts(s, ",\"version\":");
  sb_json_cstr(s, c ? SSL_get_version(ssl) : NULL);
  sb_puts(s, ",\"cipher\":");
  sb_json_cstr(s, c ? SSL_CIPHER_standard_name(c) : NULL);
  uint16_t gid = SSL_get_curve_id(ssl);
  sb_puts(s, ",\"group\":");
  sb_json_cstr(s, gid ? SSL_get_curve_name(gid) : NULL);
  sb_printf(s, ",\"hrr\":%s", SSL_used_hello_retry_request(ssl) ? "true" : "false");
  uint16_t sig = SSL_get_peer_signature_algorithm(ssl);
  sb_puts(s, ",\"peerSignatureAlgorithm\":");
  sb_json_cstr(s, sig ? SSL_get_signature_algorithm_name(sig, 0) : NULL);
}

/* ------------------------------------------------------------------ client */

typedef struct {
  const char *connect;
  const char *connect_alt; /* --count: every odd connection goes here */
  const char *sni;
  const char *ech_b64;
  int grease;
  const char *alpn;
  const char *ca;
  const char *groups;
  int ed25519;
  const uint8_t *send;
  size_t send_len;
  int read_all;
  int retry;
  int count;  /* --count N: loop mode */
  int resume; /* --resume: offer the newest ticket */
} client_opts;

/* Loop mode with --resume: the newest session (ticket) the server sent. */
static SSL_SESSION *g_resume_session = NULL;
static int g_resumed = 0;

static int new_session_cb(SSL *ssl, SSL_SESSION *session) {
  (void)ssl;
  if (g_resume_session) SSL_SESSION_free(g_resume_session);
  g_resume_session = session; /* ours now */
  return 1;
}

typedef struct {
  int handshake;
  int ech_accepted;
  int ech_rejected;
  uint8_t *retry_configs; /* valid iff ech_rejected */
  size_t retry_configs_len;
  sbuf json; /* fields of this attempt, without braces */
} attempt_result;

static int tcp_connect(const char *hostport, char *errbuf, size_t errlen) {
  char *host, *port;
  split_hostport(hostport, &host, &port);
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) {
    snprintf(errbuf, errlen, "getaddrinfo(%s): %s", host, gai_strerror(rc));
    free(host);
    free(port);
    return -1;
  }
  int fd = -1;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (fd < 0) continue;
    set_sock_timeouts(fd);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) break;
    snprintf(errbuf, errlen, "connect(%s): %s", hostport, strerror(errno));
    close(fd);
    fd = -1;
  }
  freeaddrinfo(res);
  free(host);
  free(port);
  return fd;
}

static const uint16_t kVerifyPrefsWithEd25519[] = {
    SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256,
    SSL_SIGN_ECDSA_SECP384R1_SHA384, SSL_SIGN_RSA_PSS_RSAE_SHA384, SSL_SIGN_RSA_PKCS1_SHA384,
    SSL_SIGN_RSA_PSS_RSAE_SHA512,    SSL_SIGN_RSA_PKCS1_SHA512,    SSL_SIGN_ED25519,
};

static void client_attempt(SSL_CTX *ctx, const client_opts *o, const uint8_t *ech,
                           size_t ech_len, int use_ech, attempt_result *r) {
  memset(r, 0, sizeof *r);
  reset_conn_state();
  ERR_clear_error();
  sbuf *j = &r->json;
  err_info e;
  memset(&e, 0, sizeof e);

  char cerr[256] = "";
  int fd = tcp_connect(o->connect, cerr, sizeof cerr);
  if (fd < 0) {
    sb_puts(j, "\"handshake\":false,\"echAccepted\":false,\"echRejected\":false,\"retryConfigs\":null");
    snprintf(e.text, sizeof e.text, "%s", cerr);
    snprintf(e.reason, sizeof e.reason, "CONNECT");
    sb_error(j, &e);
    return;
  }

  SSL *ssl = SSL_new(ctx);
  if (!ssl) die("SSL_new failed");
  SSL_set_fd(ssl, fd);
  if (o->sni && !SSL_set_tlsext_host_name(ssl, o->sni)) die("SSL_set_tlsext_host_name failed");
  if (o->ca) {
    SSL_set_verify(ssl, SSL_VERIFY_PEER, NULL);
    /* BoringSSL swaps in the ECH public_name itself on rejection. */
    if (o->sni && !SSL_set1_host(ssl, o->sni)) die("SSL_set1_host failed");
  } else {
    SSL_set_verify(ssl, SSL_VERIFY_NONE, NULL);
  }
  if (use_ech && ech && ech_len) {
    if (!SSL_set1_ech_config_list(ssl, ech, ech_len)) {
      capture_error(&e, "SSL_set1_ech_config_list", SSL_ERROR_SSL, -1);
      sb_puts(j, "\"handshake\":false,\"echAccepted\":false,\"echRejected\":false,\"retryConfigs\":null");
      sb_error(j, &e);
      SSL_free(ssl);
      close(fd);
      return;
    }
  }
  if (o->grease) SSL_set_enable_ech_grease(ssl, 1);
  if (o->resume && g_resume_session) SSL_set_session(ssl, g_resume_session);

  int ret = SSL_connect(ssl);
  int ssl_err = ret == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl, ret);
  if (ret != 1) {
    capture_error(&e, "SSL_connect", ssl_err, ret);
    if (ERR_GET_LIB(e.packed) == ERR_LIB_SSL && ERR_GET_REASON(e.packed) == SSL_R_ECH_REJECTED) {
      const uint8_t *rc = NULL;
      size_t rc_len = 0;
      SSL_get0_ech_retry_configs(ssl, &rc, &rc_len);
      r->ech_rejected = 1;
      r->retry_configs = xmalloc(rc_len);
      memcpy(r->retry_configs, rc, rc_len);
      r->retry_configs_len = rc_len;
    }
  }
  r->handshake = ret == 1;
  r->ech_accepted = SSL_ech_accepted(ssl);
  g_resumed = ret == 1 && SSL_session_reused(ssl);

  sb_printf(j, "\"handshake\":%s,\"echAccepted\":%s,\"echRejected\":%s",
            r->handshake ? "true" : "false", r->ech_accepted ? "true" : "false",
            r->ech_rejected ? "true" : "false");
  sb_puts(j, ",\"retryConfigs\":");
  if (r->ech_rejected)
    sb_json_b64(j, r->retry_configs, r->retry_configs_len);
  else
    sb_puts(j, "null");
  sb_printf(j, ",\"echConfigured\":%s", (use_ech && ech && ech_len) ? "true" : "false");
  sb_puts(j, ",\"sni\":");
  sb_json_cstr(j, o->sni);
  sb_session_params(j, ssl);

  X509 *peer = SSL_get_peer_certificate(ssl);
  int peer_seen = peer != NULL;
  sb_puts(j, ",\"peerCertSubject\":");
  if (peer) {
    char name[512];
    X509_NAME_oneline(X509_get_subject_name(peer), name, sizeof name);
    sb_json_cstr(j, name);
    X509_free(peer);
  } else {
    sb_puts(j, "null");
  }
  sb_puts(j, ",\"verified\":");
  if (!o->ca) {
    sb_puts(j, "null,\"verifyError\":null");
  } else {
    long vr = SSL_get_verify_result(ssl);
    /* With SSL_VERIFY_PEER a failed check aborts the handshake; a rejected
     * ECH handshake still verifies, against the ECHConfig public_name. */
    int verified = peer_seen && vr == X509_V_OK;
    sb_puts(j, verified ? "true" : "false");
    sb_puts(j, ",\"verifyError\":");
    if (vr != X509_V_OK)
      sb_json_cstr(j, X509_verify_cert_error_string(vr));
    else
      sb_puts(j, "null");
  }

  /* Application data. */
  int have_response = 0;
  sbuf resp = {0};
  if (r->handshake && (o->send || o->read_all)) {
    if (o->send && o->send_len) {
      int w = SSL_write(ssl, o->send, (int)o->send_len);
      if (w <= 0) {
        int we = SSL_get_error(ssl, w);
        if (!e.text[0]) capture_error(&e, "SSL_write", we, w);
      }
    }
    have_response = 1;
    for (;;) {
      uint8_t buf[16384];
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) {
        sb_putn(&resp, (const char *)buf, (size_t)n);
        if (!o->read_all) break; /* --send alone: one read (an echo) */
        continue;
      }
      int re = SSL_get_error(ssl, n);
      if (re != SSL_ERROR_ZERO_RETURN) {
        err_info re_info;
        capture_error(&re_info, "SSL_read", re, n);
        /* A peer that closes without close_notify after its answer is common
         * (HTTP/1.0); record but only surface as error when nothing came. */
        if (!e.text[0] && (resp.len == 0 || re != SSL_ERROR_SYSCALL)) e = re_info;
      }
      break;
    }
  }
  sb_puts(j, ",\"response\":");
  if (have_response)
    sb_json_str(j, (const uint8_t *)(resp.buf ? resp.buf : ""), resp.len);
  else
    sb_puts(j, "null");
  sb_puts(j, ",\"responseB64\":");
  if (have_response)
    sb_json_b64(j, (const uint8_t *)(resp.buf ? resp.buf : ""), resp.len);
  else
    sb_puts(j, "null");
  free(resp.buf);
  sb_error(j, &e);

  if (r->handshake) SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
}

static int run_client(int argc, char **argv) {
  client_opts o = {0};
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("missing value for %s", a), (char *)NULL))
    if (!strcmp(a, "--connect")) o.connect = NEXT();
    else if (!strcmp(a, "--sni")) o.sni = NEXT();
    else if (!strcmp(a, "--ech-config-list")) o.ech_b64 = NEXT();
    else if (!strcmp(a, "--grease")) o.grease = 1;
    else if (!strcmp(a, "--alpn")) o.alpn = NEXT();
    else if (!strcmp(a, "--ca")) o.ca = NEXT();
    else if (!strcmp(a, "--groups")) o.groups = NEXT();
    else if (!strcmp(a, "--ed25519")) o.ed25519 = 1;
    else if (!strcmp(a, "--send")) {
      const char *d = NEXT();
      o.send = (const uint8_t *)d;
      o.send_len = strlen(d);
    } else if (!strcmp(a, "--send-b64")) {
      o.send = b64_decode(NEXT(), &o.send_len, "--send-b64");
    } else if (!strcmp(a, "--read")) o.read_all = 1;
    else if (!strcmp(a, "--retry")) o.retry = 1;
    else if (!strcmp(a, "--timeout")) g_timeout_sec = atoi(NEXT());
    else if (!strcmp(a, "--count")) o.count = atoi(NEXT());
    else if (!strcmp(a, "--resume")) o.resume = 1;
    else if (!strcmp(a, "--connect-alt")) o.connect_alt = NEXT();
    else die("unknown client option '%s'", a);
#undef NEXT
  }
  if (!o.connect) die("client: --connect HOST:PORT is required");
  if (o.connect_alt && o.count <= 0) die("client: --connect-alt needs --count");
  if (g_timeout_sec <= 0) g_timeout_sec = 10;

  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  if (!ctx) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_info_callback(ctx, info_cb);
  if (o.ca && !SSL_CTX_load_verify_locations(ctx, o.ca, NULL)) die("cannot load CA file %s", o.ca);
  if (o.groups && !set_groups(ctx, o.groups)) die("bad --groups '%s'", o.groups);
  if (o.ed25519 &&
      !SSL_CTX_set_verify_algorithm_prefs(ctx, kVerifyPrefsWithEd25519,
                                          sizeof kVerifyPrefsWithEd25519 / sizeof kVerifyPrefsWithEd25519[0]))
    die("SSL_CTX_set_verify_algorithm_prefs failed");
  if (o.alpn) {
    size_t wl;
    uint8_t *w = alpn_wire(o.alpn, &wl);
    if (SSL_CTX_set_alpn_protos(ctx, w, (unsigned)wl) != 0) die("SSL_CTX_set_alpn_protos failed");
    free(w);
  }

  uint8_t *ech = NULL;
  size_t ech_len = 0;
  if (o.ech_b64) ech = b64_decode(o.ech_b64, &ech_len, "--ech-config-list");

  if (o.count > 0) {
    /* Loop mode: N connections, one summary line. */
    if (o.resume) {
      SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
      SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
    }
    int handshakes = 0, accepted = 0, rejected = 0, resumed = 0;
    struct timeval t0, t1;
    gettimeofday(&t0, NULL);
    const char *first_addr = o.connect;
    for (int n = 0; n < o.count; n++) {
      attempt_result r;
      if (o.connect_alt) o.connect = (n & 1) ? o.connect_alt : first_addr;
      client_attempt(ctx, &o, ech, ech_len, 1, &r);
      handshakes += r.handshake;
      accepted += r.ech_accepted;
      rejected += r.ech_rejected;
      resumed += g_resumed;
      if (!r.handshake && n == 0) fprintf(stderr, "harness: first connection failed: {%s}\n", r.json.buf);
      free(r.json.buf);
      free(r.retry_configs);
    }
    gettimeofday(&t1, NULL);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_usec - t0.tv_usec) / 1e3;
    printf("{\"count\":%d,\"handshakes\":%d,\"echAccepted\":%d,\"echRejected\":%d,\"resumed\":%d,\"ms\":%.1f}\n",
           o.count, handshakes, accepted, rejected, resumed, ms);
    fflush(stdout);
    if (g_resume_session) SSL_SESSION_free(g_resume_session);
    SSL_CTX_free(ctx);
    return handshakes == o.count ? 0 : 1;
  }

  attempt_result first;
  client_attempt(ctx, &o, ech, ech_len, 1, &first);
  int ok = first.handshake;

  if (o.retry && first.ech_rejected) {
    attempt_result second;
    int with_ech = first.retry_configs_len > 0;
    client_attempt(ctx, &o, first.retry_configs, first.retry_configs_len, with_ech, &second);
    ok = second.handshake;
    printf("{%s,\"retried\":true,\"retriedWithoutEch\":%s,\"firstRetryConfigs\":", second.json.buf,
           with_ech ? "false" : "true");
    sbuf t = {0};
    sb_json_b64(&t, first.retry_configs, first.retry_configs_len);
    printf("%s,\"first\":{%s}}\n", t.buf, first.json.buf);
    free(t.buf);
  } else {
    printf("{%s,\"retried\":false}\n", first.json.buf);
  }
  fflush(stdout);
  SSL_CTX_free(ctx);
  return ok ? 0 : 1;
}

/* ---------------------------------------------------------- marshal-config */

static int run_marshal(int argc, char **argv) {
  const char *public_name = NULL;
  int config_id = -1;
  size_t max_name_len = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("missing value for %s", a), (char *)NULL))
    if (!strcmp(a, "--public-name")) public_name = NEXT();
    else if (!strcmp(a, "--config-id")) config_id = atoi(NEXT());
    else if (!strcmp(a, "--max-name-len")) max_name_len = (size_t)atoi(NEXT());
    else die("unknown marshal-config option '%s'", a);
#undef NEXT
  }
  if (!public_name) die("marshal-config: --public-name is required");
  if (config_id < 0 || config_id > 255) die("marshal-config: --config-id 0..255 is required");

  EVP_HPKE_KEY *key = EVP_HPKE_KEY_new();
  if (!key || !EVP_HPKE_KEY_generate(key, EVP_hpke_x25519_hkdf_sha256()))
    die("EVP_HPKE_KEY_generate failed");
  uint8_t *cfg = NULL;
  size_t cfg_len = 0;
  if (!SSL_marshal_ech_config(&cfg, &cfg_len, (uint8_t)config_id, key, public_name, max_name_len)) {
    ERR_print_errors_fp(stderr);
    die("SSL_marshal_ech_config failed (public name '%s')", public_name);
  }
  uint8_t priv[EVP_HPKE_MAX_PRIVATE_KEY_LENGTH], pub[EVP_HPKE_MAX_PUBLIC_KEY_LENGTH];
  size_t priv_len, pub_len;
  if (!EVP_HPKE_KEY_private_key(key, priv, &priv_len, sizeof priv) ||
      !EVP_HPKE_KEY_public_key(key, pub, &pub_len, sizeof pub))
    die("EVP_HPKE_KEY export failed");

  uint8_t *list = xmalloc(cfg_len + 2);
  list[0] = (uint8_t)(cfg_len >> 8);
  list[1] = (uint8_t)cfg_len;
  memcpy(list + 2, cfg, cfg_len);

  sbuf j = {0};
  sb_puts(&j, "{\"echConfig\":");
  sb_json_b64(&j, cfg, cfg_len);
  sb_puts(&j, ",\"echConfigList\":");
  sb_json_b64(&j, list, cfg_len + 2);
  sb_puts(&j, ",\"privateKey\":");
  sb_json_b64(&j, priv, priv_len);
  sb_puts(&j, ",\"publicKey\":");
  sb_json_b64(&j, pub, pub_len);
  sb_printf(&j, ",\"configId\":%d,\"publicName\":", config_id);
  sb_json_cstr(&j, public_name);
  sb_puts(&j, "}\n");
  fputs(j.buf, stdout);
  fflush(stdout);
  OPENSSL_cleanse(priv, sizeof priv);
  OPENSSL_free(cfg);
  free(list);
  free(j.buf);
  EVP_HPKE_KEY_free(key);
  return 0;
}

/* ------------------------------------------------------------------ server */

static uint8_t *g_server_alpn = NULL;
static size_t g_server_alpn_len = 0;

static int alpn_select_cb(SSL *ssl, const uint8_t **out, uint8_t *out_len, const uint8_t *in,
                          unsigned in_len, void *arg) {
  (void)ssl;
  (void)arg;
  /* Server preference order. */
  for (size_t i = 0; i < g_server_alpn_len;) {
    uint8_t l = g_server_alpn[i];
    const uint8_t *p = g_server_alpn + i + 1;
    for (unsigned k = 0; k < in_len;) {
      uint8_t cl = in[k];
      if (k + 1 + cl > in_len) break;
      if (cl == l && memcmp(in + k + 1, p, l) == 0) {
        *out = in + k + 1;
        *out_len = cl;
        return SSL_TLSEXT_ERR_OK;
      }
      k += 1 + cl;
    }
    i += 1 + l;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

static enum ssl_select_cert_result_t select_cert_cb(const SSL_CLIENT_HELLO *ch) {
  /* Runs after BoringSSL decided ECH: |ch| is the inner hello when accepted. */
  g_conn.ch_seen = 1;
  const uint8_t *data;
  size_t len;
  if (SSL_early_callback_ctx_extension_get(ch, TLSEXT_TYPE_ech_codepoint, &data, &len)) {
    g_conn.ch_ech_type = len > 0 ? data[0] : 255;
  }
  const char *sni = SSL_get_servername(ch->ssl, TLSEXT_NAMETYPE_host_name);
  if (sni) snprintf(g_conn.ch_sni, sizeof g_conn.ch_sni, "%s", sni);
  return ssl_select_cert_success;
}

static void serve_one(SSL_CTX *ctx, int fd, int echo, const struct sockaddr_storage *peer) {
  reset_conn_state();
  ERR_clear_error();
  set_sock_timeouts(fd);
  SSL *ssl = SSL_new(ctx);
  if (!ssl) die("SSL_new failed");
  SSL_set_fd(ssl, fd);
  err_info e;
  memset(&e, 0, sizeof e);

  int ret = SSL_accept(ssl);
  int accepted = ret == 1;
  if (!accepted) capture_error(&e, "SSL_accept", SSL_get_error(ssl, ret), ret);

  /* A TLS 1.3 BoringSSL server returns from SSL_accept before reading the
   * client's Finished (or its ech_required alert): read at least once. */
  sbuf received = {0};
  int peer_closed = 0;
  if (accepted) {
    for (;;) {
      uint8_t buf[16384];
      int n = SSL_read(ssl, buf, sizeof buf);
      if (n > 0) {
        sb_putn(&received, (const char *)buf, (size_t)n);
        if (echo) {
          int w = SSL_write(ssl, buf, n);
          if (w <= 0) {
            capture_error(&e, "SSL_write", SSL_get_error(ssl, w), w);
            break;
          }
        }
        continue;
      }
      int re = SSL_get_error(ssl, n);
      if (re == SSL_ERROR_ZERO_RETURN) {
        peer_closed = 1;
      } else {
        capture_error(&e, "SSL_read", re, n);
        if (!strcmp(e.reason, "EOF")) peer_closed = 1;
      }
      break;
    }
  }
  /* Complete once the client's Finished was processed (SSL_in_init stays
   * set while BoringSSL still waits for it after an early return). */
  int handshake = accepted && g_conn.handshake_done && !SSL_in_init(ssl);

  char peer_str[INET6_ADDRSTRLEN + 8] = "";
  if (peer->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)peer;
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &s4->sin_addr, a, sizeof a);
    snprintf(peer_str, sizeof peer_str, "%s:%u", a, ntohs(s4->sin_port));
  } else if (peer->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)peer;
    char a[INET6_ADDRSTRLEN];
    inet_ntop(AF_INET6, &s6->sin6_addr, a, sizeof a);
    snprintf(peer_str, sizeof peer_str, "[%s]:%u", a, ntohs(s6->sin6_port));
  }

  sbuf j = {0};
  sb_printf(&j, "{\"connection\":true,\"handshake\":%s,\"accepted\":%s,\"echAccepted\":%s",
            handshake ? "true" : "false", accepted ? "true" : "false",
            SSL_ech_accepted(ssl) ? "true" : "false");
  sb_puts(&j, ",\"sni\":");
  sb_json_cstr(&j, SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name));
  sb_puts(&j, ",\"clientHelloEch\":");
  if (!g_conn.ch_seen || g_conn.ch_ech_type < 0)
    sb_puts(&j, "null");
  else if (g_conn.ch_ech_type == 0)
    sb_puts(&j, "\"outer\"");
  else if (g_conn.ch_ech_type == 1)
    sb_puts(&j, "\"inner\"");
  else
    sb_printf(&j, "\"type-%d\"", g_conn.ch_ech_type);
  sb_puts(&j, ",\"clientHelloSni\":");
  sb_json_cstr(&j, g_conn.ch_seen && g_conn.ch_sni[0] ? g_conn.ch_sni : NULL);
  sb_session_params(&j, ssl);
  sb_puts(&j, ",\"received\":");
  sb_json_str(&j, (const uint8_t *)(received.buf ? received.buf : ""), received.len);
  sb_printf(&j, ",\"receivedBytes\":%zu,\"peerClosed\":%s,\"peer\":", received.len,
            peer_closed ? "true" : "false");
  sb_json_cstr(&j, peer_str);
  sb_error(&j, &e);
  sb_puts(&j, "}\n");
  fputs(j.buf, stdout);
  fflush(stdout);
  free(j.buf);
  free(received.buf);

  if (accepted && !peer_closed && g_conn.alert_recv < 0) SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
}

static int run_server(int argc, char **argv) {
  const char *listen_on = NULL, *cert = NULL, *key = NULL, *groups = NULL, *alpn = NULL;
  const char *ech_keys_b64[MAX_ECH_KEYS], *ech_cfgs_b64[MAX_ECH_KEYS];
  int n_keys = 0, n_cfgs = 0, once = 0, echo = 1, all_retry = 0, lifetime = 600;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (die("missing value for %s", a), (char *)NULL))
    if (!strcmp(a, "--listen")) listen_on = NEXT();
    else if (!strcmp(a, "--cert")) cert = NEXT();
    else if (!strcmp(a, "--key")) key = NEXT();
    else if (!strcmp(a, "--ech-key")) {
      if (n_keys >= MAX_ECH_KEYS) die("too many --ech-key");
      ech_keys_b64[n_keys++] = NEXT();
    } else if (!strcmp(a, "--ech-config")) {
      if (n_cfgs >= MAX_ECH_KEYS) die("too many --ech-config");
      ech_cfgs_b64[n_cfgs++] = NEXT();
    } else if (!strcmp(a, "--all-retry")) all_retry = 1;
    else if (!strcmp(a, "--groups")) groups = NEXT();
    else if (!strcmp(a, "--alpn")) alpn = NEXT();
    else if (!strcmp(a, "--once")) once = 1;
    else if (!strcmp(a, "--no-echo")) echo = 0;
    else if (!strcmp(a, "--timeout")) g_timeout_sec = atoi(NEXT());
    else if (!strcmp(a, "--lifetime")) lifetime = atoi(NEXT());
    else die("unknown server option '%s'", a);
#undef NEXT
  }
  if (!listen_on || !cert || !key) die("server: --listen, --cert and --key are required");
  if (n_keys != n_cfgs) die("server: --ech-key and --ech-config must come in pairs");
  if (g_timeout_sec <= 0) g_timeout_sec = 10;

  /* Never outlive the test that started us. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (lifetime > 0) alarm((unsigned)lifetime);

  SSL_CTX *ctx = SSL_CTX_new(TLS_method());
  if (!ctx) die("SSL_CTX_new failed");
  SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_info_callback(ctx, info_cb);
  SSL_CTX_set_select_certificate_cb(ctx, select_cert_cb);
  if (!SSL_CTX_use_certificate_chain_file(ctx, cert)) {
    ERR_print_errors_fp(stderr);
    die("cannot load certificate chain %s", cert);
  }
  if (!SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM)) {
    ERR_print_errors_fp(stderr);
    die("cannot load private key %s", key);
  }
  if (groups && !set_groups(ctx, groups)) die("bad --groups '%s'", groups);
  if (alpn) {
    g_server_alpn = alpn_wire(alpn, &g_server_alpn_len);
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select_cb, NULL);
  }

  uint8_t *retry_list = NULL;
  size_t retry_list_len = 0;
  if (n_keys > 0) {
    SSL_ECH_KEYS *keys = SSL_ECH_KEYS_new();
    if (!keys) die("SSL_ECH_KEYS_new failed");
    for (int k = 0; k < n_keys; k++) {
      size_t priv_len, cfg_len;
      uint8_t *priv = b64_decode(ech_keys_b64[k], &priv_len, "--ech-key");
      uint8_t *cfg = b64_decode(ech_cfgs_b64[k], &cfg_len, "--ech-config");
      EVP_HPKE_KEY *hk = EVP_HPKE_KEY_new();
      if (!hk || !EVP_HPKE_KEY_init(hk, EVP_hpke_x25519_hkdf_sha256(), priv, priv_len))
        die("--ech-key #%d is not an X25519 private key", k + 1);
      if (!SSL_ECH_KEYS_add(keys, k == 0 || all_retry, cfg, cfg_len, hk)) {
        ERR_print_errors_fp(stderr);
        die("SSL_ECH_KEYS_add failed for config #%d", k + 1);
      }
      OPENSSL_cleanse(priv, priv_len);
      free(priv);
      free(cfg);
      EVP_HPKE_KEY_free(hk);
    }
    if (!SSL_ECH_KEYS_marshal_retry_configs(keys, &retry_list, &retry_list_len))
      die("SSL_ECH_KEYS_marshal_retry_configs failed");
    if (!SSL_CTX_set1_ech_keys(ctx, keys)) {
      ERR_print_errors_fp(stderr);
      die("SSL_CTX_set1_ech_keys failed");
    }
    SSL_ECH_KEYS_free(keys);
  }

  char *host, *port;
  split_hostport(listen_on, &host, &port);
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  int rc = getaddrinfo(host, port, &hints, &res);
  if (rc != 0) die("getaddrinfo(%s): %s", listen_on, gai_strerror(rc));
  int lfd = socket(res->ai_family, res->ai_socktype, res->ai_protocol);
  if (lfd < 0) die("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(lfd, res->ai_addr, res->ai_addrlen) != 0) die("bind(%s): %s", listen_on, strerror(errno));
  if (listen(lfd, 16) != 0) die("listen: %s", strerror(errno));
  freeaddrinfo(res);
  free(host);
  free(port);

  struct sockaddr_storage bound;
  socklen_t blen = sizeof bound;
  getsockname(lfd, (struct sockaddr *)&bound, &blen);
  unsigned actual_port = bound.ss_family == AF_INET6
                             ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                             : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  sbuf j = {0};
  sb_printf(&j, "{\"listening\":%u,\"pid\":%d,\"echConfigList\":", actual_port, (int)getpid());
  if (retry_list)
    sb_json_b64(&j, retry_list, retry_list_len);
  else
    sb_puts(&j, "null");
  sb_puts(&j, "}\n");
  fputs(j.buf, stdout);
  fflush(stdout);
  free(j.buf);
  fprintf(stderr, "harness: server listening on port %u (%d ECH key(s))\n", actual_port, n_keys);

  for (;;) {
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    int fd = accept(lfd, (struct sockaddr *)&peer, &plen);
    if (fd < 0) {
      if (errno == EINTR) continue;
      die("accept: %s", strerror(errno));
    }
    serve_one(ctx, fd, echo, &peer);
    if (once) break;
  }
  close(lfd);
  OPENSSL_free(retry_list);
  SSL_CTX_free(ctx);
  return 0;
}

/* -------------------------------------------------------------------- main */

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc < 2) die("usage: harness client|marshal-config|server [options]");
  const char *mode = argv[1];
  if (!strcmp(mode, "client")) return run_client(argc - 2, argv + 2);
  if (!strcmp(mode, "marshal-config")) return run_marshal(argc - 2, argv + 2);
  if (!strcmp(mode, "server")) return run_server(argc - 2, argv + 2);
  die("unknown mode '%s'", mode);
  return 2;
}
