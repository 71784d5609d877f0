/* echo: a C UDP "echo" of LISP-sized messages, the machine's limit (bench only).
 *
 * Binds ADDR:PORT with SO_REUSEPORT in each of P processes (fork), and answers every
 * datagram with a reply of REPLY bytes whose bytes 4..11 are the request's 8 bytes
 * at NONCE_OFF (the nonce, so the load generator matches it like a Map-Reply) and
 * whose first byte says Map-Reply.  recvmmsg/sendmmsg, 64 per call.  Exits after -t
 * seconds (alarm) or on SIGTERM.
 *
 *   echo -a ADDR -p PORT -n NONCE_OFF -s REPLY [-P PROCS] [-t SECONDS]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define BATCH 64
#define MAXMSG 9000

static volatile sig_atomic_t stop = 0;
static void on_sig(int s) { (void)s; stop = 1; }

static int serve(const char *addr, int port, int noff, int rsize) {
    int v6 = strchr(addr, ':') != NULL;
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
    int one = 1, sz = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    struct sockaddr_storage sa;
    socklen_t sl;
    memset(&sa, 0, sizeof sa);
    if (v6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        inet_pton(AF_INET6, addr, &s6->sin6_addr);
        sl = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        inet_pton(AF_INET, addr, &s4->sin_addr);
        sl = sizeof *s4;
    }
    if (bind(fd, (struct sockaddr *)&sa, sl) < 0) { perror("bind"); return 1; }
    static uint8_t in[BATCH][MAXMSG], out[BATCH][MAXMSG];
    struct sockaddr_storage peers[BATCH];
    struct mmsghdr rm[BATCH], sm[BATCH];
    struct iovec riov[BATCH], siov[BATCH];
    for (int i = 0; i < BATCH; i++) {
        memset(out[i], 0, (size_t)rsize);
        out[i][0] = 0x20;  /* Map-Reply */
    }
    while (!stop) {
        for (int i = 0; i < BATCH; i++) {
            riov[i].iov_base = in[i];
            riov[i].iov_len = MAXMSG;
            memset(&rm[i], 0, sizeof rm[i]);
            rm[i].msg_hdr.msg_iov = &riov[i];
            rm[i].msg_hdr.msg_iovlen = 1;
            rm[i].msg_hdr.msg_name = &peers[i];
            rm[i].msg_hdr.msg_namelen = sizeof peers[i];
        }
        int r = recvmmsg(fd, rm, BATCH, MSG_WAITFORONE, NULL);
        if (r <= 0) continue;
        for (int i = 0; i < r; i++) {
            if (rm[i].msg_len >= (unsigned)(noff + 8)) memcpy(out[i] + 4, in[i] + noff, 8);
            siov[i].iov_base = out[i];
            siov[i].iov_len = (size_t)rsize;
            memset(&sm[i], 0, sizeof sm[i]);
            sm[i].msg_hdr.msg_iov = &siov[i];
            sm[i].msg_hdr.msg_iovlen = 1;
            sm[i].msg_hdr.msg_name = &peers[i];
            sm[i].msg_hdr.msg_namelen = rm[i].msg_hdr.msg_namelen;
        }
        sendmmsg(fd, sm, r, 0);
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    const char *addr = "127.0.0.1";
    int port = 4342, noff = 36, rsize = 40, procs = 1;
    double secs = 60;
    int c;
    while ((c = getopt(argc, argv, "a:p:n:s:P:t:")) != -1) {
        switch (c) {
        case 'a': addr = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'n': noff = atoi(optarg); break;
        case 's': rsize = atoi(optarg); break;
        case 'P': procs = atoi(optarg); break;
        case 't': secs = atof(optarg); break;
        default:
            fprintf(stderr, "usage: echo -a ADDR -p PORT -n NONCE_OFF -s REPLY [-P PROCS] [-t S]\n");
            return 2;
        }
    }
    if (rsize < 12 || rsize > MAXMSG || procs < 1 || procs > 64 || secs <= 0 || secs > 3600) return 2;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sig;  /* no SA_RESTART: recvmmsg returns EINTR */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    pid_t kids[64];
    for (int i = 1; i < procs; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            alarm((unsigned)secs + 1);
            return serve(addr, port, noff, rsize);
        }
    }
    alarm((unsigned)secs + 1);
    int rc = serve(addr, port, noff, rsize);
    for (int i = 1; i < procs; i++) {
        kill(kids[i], SIGTERM);
        waitpid(kids[i], NULL, 0);
    }
    return rc;
}
