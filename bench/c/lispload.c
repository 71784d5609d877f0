/* lispload: a small UDP load generator for LISP control messages (bench only).
 *
 * Sends request templates read from a file to ADDR:PORT from NSOCK sockets bound to
 * SRC (ports chosen by the kernel) and matches replies by the 64-bit nonce at byte 4
 * of the reply (Map-Reply, Map-Notify).  Two ways to send:
 *
 *   patch mode (default): template i % n is sent with its nonce (at --nonce-off) set
 *     to BASE + seq and, when --udp-off is given, the inner UDP source port set to
 *     the sending socket's port and the inner UDP checksum recomputed (an ECM names
 *     the port its Map-Reply goes to).  Runs for -t seconds.
 *   raw mode (--raw): template i is sent once, as is; its nonce must be BASE + i
 *     (pre-sealed Map-Registers).  Runs until every template was sent or -t.
 *
 * Load: -w W keeps W requests in flight in total (closed loop; a socket whose
 * replies stop for --timeout ms forgets its outstanding requests), or -r R sends R
 * requests/s in total, paced open-loop (late sends are sent at once, and the
 * lateness is reported).  -T threads split the sockets.  Prints one JSON object:
 * counts, rates over the measured interval (after --warmup s), latency percentiles
 * (ns, from the moment of the send system call to the return of the receive).
 *
 * --no-connect: the sockets are not connected to ADDR, so replies from other hosts
 * (a request forwarded to another node, answered from there) are received too.
 *
 * Every loop is bounded by the run time; the process also arms alarm() as a backstop.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXSOCK 256
#define BATCH 64
#define MAXMSG 9000
#define RING (1u << 20)

typedef struct { uint8_t *data; uint32_t len; } tmpl_t;

static tmpl_t *tm;
static uint32_t ntm;
static int no_connect = 0, raw_mode = 0, nonce_off = -1, udp_off = -1, ip_off = 4;
static double rate = 0, duration = 5, warmup = 0.5, drain = 0.3, timeout_ms = 200;
static uint32_t window = 0;
static uint64_t base = 0;
static int nsock = 8, nthreads = 1;
static struct sockaddr_storage dst;
static socklen_t dstlen;
static char src_addr[64] = "127.0.0.1";
static int family = AF_INET;
static int64_t t_start, t_warm, t_stop;
static volatile int alarm_hit = 0;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

typedef struct {
    int id;
    int fds[MAXSOCK];
    uint16_t ports[MAXSOCK];
    int nfd;
    uint32_t outstanding[MAXSOCK];
    int64_t last_progress[MAXSOCK];
    /* ring of send times by seq */
    uint64_t *ring_seq;
    int64_t *ring_t;
    uint32_t *lat;      /* latency samples, ns */
    size_t nlat, caplat;
    uint32_t *late;     /* open-loop lateness samples, ns */
    size_t nlate, caplate;
    uint64_t next_local;  /* local sequence counter */
    uint64_t sent, sent_measured, recv, recv_measured, recv_in_window, timeouts, unmatched, send_err;
    uint8_t sbuf[BATCH][MAXMSG];
    uint8_t rbuf[BATCH][MAXMSG];
} thr_t;

static uint16_t csum_fold(uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)~s;
}

static uint32_t csum_add(uint32_t s, const uint8_t *p, size_t n) {
    size_t i;
    for (i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1) s += (uint32_t)(p[n - 1] << 8);
    return s;
}

/* recompute the inner UDP checksum of an ECM at ip_off/udp_off */
static void fix_udp_csum(uint8_t *m, uint32_t len) {
    uint8_t *ip = m + ip_off, *udp = m + udp_off;
    uint32_t ulen = (uint32_t)(udp[4] << 8 | udp[5]);
    uint32_t s = 0;
    if (udp_off + ulen > len) return;
    udp[6] = udp[7] = 0;
    if ((ip[0] >> 4) == 4) {
        s = csum_add(s, ip + 12, 8);
    } else {
        s = csum_add(s, ip + 8, 32);
    }
    s += 17 + ulen;
    s = csum_add(s, udp, ulen);
    uint16_t c = csum_fold(s);
    if (c == 0) c = 0xffff;
    udp[6] = c >> 8;
    udp[7] = c & 0xff;
}

static void put64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = v & 0xff; v >>= 8; }
}

static uint64_t get64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
}

static void push_sample(uint32_t **arr, size_t *n, size_t *cap, uint32_t v) {
    if (*n == *cap) {
        if (*cap >= (size_t)50000000) return;
        *cap = *cap ? *cap * 2 : 65536;
        *arr = realloc(*arr, *cap * sizeof(uint32_t));
        if (!*arr) { perror("realloc"); exit(1); }
    }
    (*arr)[(*n)++] = v;
}

/* global seq for a thread's k-th message */
static uint64_t seq_of(thr_t *t, uint64_t local) {
    return local * (uint64_t)nthreads + (uint64_t)t->id;
}

/* build and send up to n messages on socket index si; returns how many were sent */
static int send_batch(thr_t *t, int si, int n) {
    struct mmsghdr mm[BATCH];
    struct iovec iov[BATCH];
    uint64_t seqs[BATCH];
    if (n > BATCH) n = BATCH;
    int k = 0;
    for (; k < n; k++) {
        uint64_t seq = seq_of(t, t->next_local);
        const tmpl_t *tp;
        if (raw_mode) {
            if (seq >= ntm) break;
            tp = &tm[seq];
            iov[k].iov_base = tp->data;
            iov[k].iov_len = tp->len;
        } else {
            tp = &tm[seq % ntm];
            uint8_t *b = t->sbuf[k];
            memcpy(b, tp->data, tp->len);
            put64(b + nonce_off, base + seq);
            if (udp_off >= 0) {
                b[udp_off] = t->ports[si] >> 8;
                b[udp_off + 1] = t->ports[si] & 0xff;
                fix_udp_csum(b, tp->len);
            }
            iov[k].iov_base = b;
            iov[k].iov_len = tp->len;
        }
        memset(&mm[k], 0, sizeof mm[k]);
        mm[k].msg_hdr.msg_iov = &iov[k];
        mm[k].msg_hdr.msg_iovlen = 1;
        if (no_connect) {
            mm[k].msg_hdr.msg_name = &dst;
            mm[k].msg_hdr.msg_namelen = dstlen;
        }
        seqs[k] = seq;
        t->next_local++;
    }
    if (k == 0) return 0;
    int64_t ts = now_ns();
    int r = sendmmsg(t->fds[si], mm, k, 0);
    if (r < 0) {
        t->send_err++;
        r = 0;
    }
    /* messages not sent are skipped (counted as send errors) */
    if (r < k) t->send_err += k - r;
    for (int i = 0; i < r; i++) {
        uint32_t slot = seqs[i] & (RING - 1);
        t->ring_seq[slot] = seqs[i];
        t->ring_t[slot] = ts;
    }
    t->sent += r;
    if (ts >= t_warm && ts < t_stop) t->sent_measured += r;
    return r;
}

static int recv_some(thr_t *t, int si) {
    struct mmsghdr mm[BATCH];
    struct iovec iov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = t->rbuf[i];
        iov[i].iov_len = MAXMSG;
        memset(&mm[i], 0, sizeof mm[i]);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    int r = recvmmsg(t->fds[si], mm, BATCH, MSG_DONTWAIT, NULL);
    if (r <= 0) return 0;
    int64_t tr = now_ns();
    for (int i = 0; i < r; i++) {
        if (mm[i].msg_len < 12) { t->unmatched++; continue; }
        uint64_t seq = get64(t->rbuf[i] + 4) - base;
        uint32_t slot = seq & (RING - 1);
        if (t->ring_seq[slot] != seq || t->ring_t[slot] == 0) { t->unmatched++; continue; }
        int64_t ts = t->ring_t[slot];
        t->ring_t[slot] = 0;
        t->recv++;
        if (tr >= t_warm && tr < t_stop) t->recv_in_window++;
        if (ts >= t_warm && ts < t_stop) {
            t->recv_measured++;
            int64_t l = tr - ts;
            push_sample(&t->lat, &t->nlat, &t->caplat, l > 0xffffffffLL ? 0xffffffffu : (uint32_t)l);
        }
    }
    if (t->outstanding[si] >= (uint32_t)r) t->outstanding[si] -= r; else t->outstanding[si] = 0;
    t->last_progress[si] = tr;
    return r;
}

static void *run_thread(void *arg) {
    thr_t *t = arg;
    struct pollfd pfd[MAXSOCK];
    for (int i = 0; i < t->nfd; i++) { pfd[i].fd = t->fds[i]; pfd[i].events = POLLIN; }
    double thr_rate = rate / nthreads;
    uint32_t per_sock_window = 0;
    if (window) {
        uint32_t mywin = window / nthreads + ((uint32_t)t->id < window % nthreads);
        per_sock_window = mywin / t->nfd;
        if (per_sock_window == 0) per_sock_window = 1;
    }
    int rr = 0;
    int64_t t_end_send = t_stop;
    for (;;) {
        int64_t now = now_ns();
        if (alarm_hit || now >= t_end_send) break;
        if (raw_mode && seq_of(t, t->next_local) >= ntm) break;
        int poll_ns = 1000000;  /* 1 ms default */
        if (window) {
            for (int i = 0; i < t->nfd; i++) {
                if (t->outstanding[i] && now - t->last_progress[i] > (int64_t)(timeout_ms * 1e6)) {
                    t->timeouts += t->outstanding[i];
                    t->outstanding[i] = 0;
                }
                while (t->outstanding[i] < per_sock_window) {
                    int want = per_sock_window - t->outstanding[i];
                    int s = send_batch(t, i, want);
                    if (s <= 0) break;
                    if (t->outstanding[i] == 0) t->last_progress[i] = now;
                    t->outstanding[i] += s;
                }
            }
        } else {
            /* open loop: messages due by now */
            double elapsed = (now - t_start) / 1e9;
            uint64_t due = (uint64_t)(elapsed * thr_rate);
            int guard = 0;
            while (t->next_local < due && guard++ < 64) {
                int64_t sched = t_start + (int64_t)((double)t->next_local / thr_rate * 1e9);
                int64_t lateness = now - sched;
                uint64_t n = due - t->next_local;
                if (n > 16) n = 16;
                int s = send_batch(t, rr, (int)n);
                if (now >= t_warm)
                    push_sample(&t->late, &t->nlate, &t->caplate, lateness > 0xffffffffLL ? 0xffffffffu : (uint32_t)(lateness < 0 ? 0 : lateness));
                rr = (rr + 1) % t->nfd;
                if (s <= 0) break;
                if (raw_mode && seq_of(t, t->next_local) >= ntm) break;
            }
            double next_at = t_start + (double)(t->next_local + 1) / thr_rate * 1e9;
            int64_t wait = (int64_t)next_at - now_ns();
            poll_ns = wait < 0 ? 0 : (wait > 1000000 ? 1000000 : (int)wait);
        }
        struct timespec to = {0, poll_ns};
        int pr = ppoll(pfd, t->nfd, &to, NULL);
        if (pr > 0) {
            for (int i = 0; i < t->nfd; i++)
                if (pfd[i].revents & POLLIN)
                    for (int g = 0; g < 16 && recv_some(t, i) == BATCH; g++) ;
        }
    }
    /* drain */
    int64_t dend = now_ns() + (int64_t)(drain * 1e9);
    while (now_ns() < dend && !alarm_hit) {
        struct timespec to = {0, 2000000};
        int pr = ppoll(pfd, t->nfd, &to, NULL);
        if (pr > 0)
            for (int i = 0; i < t->nfd; i++)
                if (pfd[i].revents & POLLIN) recv_some(t, i);
    }
    return NULL;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static void print_pcts(const char *name, uint32_t *v, size_t n) {
    printf("\"%s\": {\"n\": %zu", name, n);
    if (n) {
        qsort(v, n, sizeof *v, cmp_u32);
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += v[i];
        const double ps[] = {50, 90, 99, 99.9, 99.99};
        const char *pn[] = {"p50", "p90", "p99", "p99.9", "p99.99"};
        for (int i = 0; i < 5; i++) {
            size_t k = (size_t)(ps[i] / 100.0 * (double)n);
            if (k >= n) k = n - 1;
            printf(", \"%s\": %u", pn[i], v[k]);
        }
        printf(", \"min\": %u, \"max\": %u, \"mean\": %.0f", v[0], v[n - 1], sum / n);
    }
    printf("}");
}

static void load_templates(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    size_t cap = 1024;
    tm = malloc(cap * sizeof *tm);
    uint8_t hdr[4];
    while (fread(hdr, 1, 4, f) == 4) {
        uint32_t len = (uint32_t)hdr[0] << 24 | hdr[1] << 16 | hdr[2] << 8 | hdr[3];
        if (len == 0 || len > MAXMSG) { fprintf(stderr, "bad template length %u\n", len); exit(2); }
        if (ntm == cap) { cap *= 2; tm = realloc(tm, cap * sizeof *tm); }
        tm[ntm].data = malloc(len);
        tm[ntm].len = len;
        if (fread(tm[ntm].data, 1, len, f) != len) { fprintf(stderr, "truncated template\n"); exit(2); }
        ntm++;
    }
    fclose(f);
    if (!ntm) { fprintf(stderr, "no templates\n"); exit(2); }
}

static void on_alarm(int s) { (void)s; alarm_hit = 1; }

static void usage(void) {
    fprintf(stderr,
            "usage: lispload -d ADDR -p PORT -f TEMPLATES [-s SRC] [-n NSOCK] [-T THREADS]\n"
            "        (-w WINDOW | -r RATE) [-t SECONDS] [--warmup S] [--drain S] [--timeout MS]\n"
            "        [--raw] [--no-connect] [--base N] [--nonce-off N] [--udp-off N] [--ip-off N]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *daddr = NULL, *tpath = NULL;
    int dport = 4342;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
#define NEXT() (i + 1 < argc ? argv[++i] : (usage(), ""))
        if (!strcmp(a, "-d")) daddr = NEXT();
        else if (!strcmp(a, "-p")) dport = atoi(NEXT());
        else if (!strcmp(a, "-f")) tpath = NEXT();
        else if (!strcmp(a, "-s")) snprintf(src_addr, sizeof src_addr, "%s", NEXT());
        else if (!strcmp(a, "-n")) nsock = atoi(NEXT());
        else if (!strcmp(a, "-T")) nthreads = atoi(NEXT());
        else if (!strcmp(a, "-w")) window = (uint32_t)atoi(NEXT());
        else if (!strcmp(a, "-r")) rate = atof(NEXT());
        else if (!strcmp(a, "-t")) duration = atof(NEXT());
        else if (!strcmp(a, "--warmup")) warmup = atof(NEXT());
        else if (!strcmp(a, "--drain")) drain = atof(NEXT());
        else if (!strcmp(a, "--timeout")) timeout_ms = atof(NEXT());
        else if (!strcmp(a, "--raw")) raw_mode = 1;
        else if (!strcmp(a, "--no-connect")) no_connect = 1;
        else if (!strcmp(a, "--base")) base = strtoull(NEXT(), NULL, 0);
        else if (!strcmp(a, "--nonce-off")) nonce_off = atoi(NEXT());
        else if (!strcmp(a, "--udp-off")) udp_off = atoi(NEXT());
        else if (!strcmp(a, "--ip-off")) ip_off = atoi(NEXT());
        else usage();
    }
    if (!daddr || !tpath || (!window && rate <= 0) || (window && rate > 0)) usage();
    if (!raw_mode && nonce_off < 0) { fprintf(stderr, "patch mode needs --nonce-off\n"); exit(2); }
    if (nsock < 1 || nsock > MAXSOCK || nthreads < 1 || nthreads > nsock) usage();
    if (duration <= 0 || duration > 600) { fprintf(stderr, "-t must be in (0, 600]\n"); exit(2); }
    load_templates(tpath);

    memset(&dst, 0, sizeof dst);
    if (strchr(daddr, ':')) {
        struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)&dst;
        family = AF_INET6;
        d6->sin6_family = AF_INET6;
        d6->sin6_port = htons(dport);
        if (inet_pton(AF_INET6, daddr, &d6->sin6_addr) != 1) usage();
        dstlen = sizeof *d6;
    } else {
        struct sockaddr_in *d4 = (struct sockaddr_in *)&dst;
        d4->sin_family = AF_INET;
        d4->sin_port = htons(dport);
        if (inet_pton(AF_INET, daddr, &d4->sin_addr) != 1) usage();
        dstlen = sizeof *d4;
    }
    thr_t *th = calloc(nthreads, sizeof *th);
    for (int i = 0; i < nthreads; i++) {
        th[i].id = i;
        th[i].ring_seq = calloc(RING, sizeof(uint64_t));
        th[i].ring_t = calloc(RING, sizeof(int64_t));
        for (uint32_t s = 0; s < RING; s++) th[i].ring_seq[s] = UINT64_MAX;
    }
    for (int s = 0; s < nsock; s++) {
        int fd = socket(family, SOCK_DGRAM, 0);
        if (fd < 0) { perror("socket"); exit(1); }
        int sz = 4 << 20;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
        struct sockaddr_storage sa;
        socklen_t sl;
        memset(&sa, 0, sizeof sa);
        if (family == AF_INET6) {
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
            s6->sin6_family = AF_INET6;
            if (inet_pton(AF_INET6, src_addr, &s6->sin6_addr) != 1) usage();
            sl = sizeof *s6;
        } else {
            struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
            s4->sin_family = AF_INET;
            if (inet_pton(AF_INET, src_addr, &s4->sin_addr) != 1) usage();
            sl = sizeof *s4;
        }
        if (bind(fd, (struct sockaddr *)&sa, sl) < 0) { perror("bind"); exit(1); }
        if (!no_connect && connect(fd, (struct sockaddr *)&dst, dstlen) < 0) { perror("connect"); exit(1); }
        getsockname(fd, (struct sockaddr *)&sa, &sl);
        uint16_t port = family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&sa)->sin6_port)
                                          : ntohs(((struct sockaddr_in *)&sa)->sin_port);
        thr_t *t = &th[s % nthreads];
        t->fds[t->nfd] = fd;
        t->ports[t->nfd] = port;
        t->nfd++;
    }
    signal(SIGALRM, on_alarm);
    alarm((unsigned)(duration + warmup + drain + 10));
    t_start = now_ns();
    t_warm = t_start + (int64_t)(warmup * 1e9);
    t_stop = t_start + (int64_t)((warmup + duration) * 1e9);
    for (int i = 0; i < nthreads; i++) th[i].last_progress[0] = t_start;
    pthread_t pt[64];
    for (int i = 0; i < nthreads; i++) pthread_create(&pt[i], NULL, run_thread, &th[i]);
    for (int i = 0; i < nthreads; i++) pthread_join(pt[i], NULL);
    int64_t t_end = now_ns();

    uint64_t sent = 0, sent_m = 0, recv = 0, recv_m = 0, recv_w = 0, to = 0, um = 0, se = 0;
    size_t nl = 0, nla = 0;
    for (int i = 0; i < nthreads; i++) {
        sent += th[i].sent; sent_m += th[i].sent_measured; recv += th[i].recv;
        recv_m += th[i].recv_measured; recv_w += th[i].recv_in_window; to += th[i].timeouts;
        um += th[i].unmatched; se += th[i].send_err; nl += th[i].nlat; nla += th[i].nlate;
    }
    uint32_t *lat = malloc((nl + 1) * sizeof *lat), *late = malloc((nla + 1) * sizeof *late);
    size_t k = 0, ka = 0;
    for (int i = 0; i < nthreads; i++) {
        if (th[i].nlat) memcpy(lat + k, th[i].lat, th[i].nlat * sizeof *lat);
        k += th[i].nlat;
        if (th[i].nlate) memcpy(late + ka, th[i].late, th[i].nlate * sizeof *late);
        ka += th[i].nlate;
    }
    /* in raw mode the run may end before t_stop: measure over what was used */
    double meas = (double)((t_end < t_stop ? t_end : t_stop) - t_warm) / 1e9;
    if (meas <= 0) meas = 1e-9;
    printf("{\"mode\": \"%s\", \"load\": \"%s\", \"window\": %u, \"rate_offered\": %.1f, "
           "\"sockets\": %d, \"threads\": %d, \"templates\": %u, \"measured_s\": %.4f, "
           "\"sent\": %llu, \"sent_measured\": %llu, \"received\": %llu, \"received_measured\": %llu, "
           "\"received_in_window\": %llu, \"timeouts\": %llu, \"unmatched\": %llu, \"send_errors\": %llu, "
           "\"send_rate\": %.1f, \"reply_rate\": %.1f, \"loss\": %.6f, ",
           raw_mode ? "raw" : "patch", window ? "window" : "rate", window, rate, nsock, nthreads, ntm,
           meas, (unsigned long long)sent, (unsigned long long)sent_m, (unsigned long long)recv,
           (unsigned long long)recv_m, (unsigned long long)recv_w, (unsigned long long)to,
           (unsigned long long)um, (unsigned long long)se, sent_m / meas, recv_w / meas,
           sent_m ? 1.0 - (double)recv_m / (double)sent_m : 0.0);
    print_pcts("latency_ns", lat, nl);
    printf(", ");
    print_pcts("send_lateness_ns", late, nla);
    printf(", \"wall_s\": %.3f}\n", (t_end - t_start) / 1e9);
    return 0;
}
