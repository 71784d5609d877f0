/* The Map-Resolver worker's receive loop for the common request, in C (issue 11).
 *
 * One Core per worker socket.  drain() reads a batch of datagrams with recvmmsg,
 * answers the ones that FastPath.handle (common/machines/fastpath.py) would answer
 * from its answer cache, with the same checks in the same order, and sends the
 * replies with one sendmmsg.  It reads and writes the same Python state as the
 * Python path: the FastPath's answer cache (fast._c), its ITR-RLOC names
 * (fast._names, fast._name), the shared token tables (TokenTable._d, _memo,
 * _slots) and the worker's shun buckets (Shun._b, only read).  Everything else
 * (a shunned source, a cache miss, an entry the full path answers, anything
 * unusual, pull-mode and local-database cases) is handed, in its turn, to the
 * worker's Python datagram_received unchanged; a rate-limit drop is reported
 * through the drop callable in its turn.  handle() runs the same decision on one
 * datagram without a socket (the differential test's entry point).
 *
 * The rate arithmetic is TokenTable.allow's, in doubles, in the same order
 * (compiled with -ffp-contract=off so that no fused multiply-add changes a bit).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define BATCH 64
#define SLOT 65536            /* one receive buffer: any UDP datagram fits */
#define ROUNDS 8              /* recvmmsg calls per drain() at most (fairness to the loop) */
#define NAME_MEMO_MAX 65536
#define MR_SPECIAL (0x02000000u | 0x04000000u | 0x00100000u | 0x00002000u)

typedef struct {
    Py_buffer view;           /* the table's doubles: debt at 2i, last at 2i + 1 */
    PyObject *memo;           /* TokenTable._memo: name -> (pos, pos) */
    PyObject *slots;          /* TokenTable._slots (bound) */
    Py_ssize_t offset;
    double rate, burst;
    int on;
} Limit;

typedef struct {
    PyObject_HEAD
    PyObject *fast;           /* the FastPath */
    PyObject *other;          /* datagram_received(data, addr): the Python path */
    PyObject *drop;           /* drop(reason, detail, host, port, now) */
    PyObject *send;           /* send(data, (host, port)): fallback when sendmmsg cannot */
    PyObject *shun;           /* Shun._b: host -> [tokens, last] */
    PyObject *src_names;      /* raw source address -> host text (bounded) */
    Limit src, dst;
    int fd, six;
    int in_sync, local_db, serves;
    unsigned long long received, hit, proxy, negative, dropped, handed, batches;
    /* receive and send state (allocated on the first drain) */
    uint8_t *bufs;
    struct mmsghdr rmsg[BATCH], smsg[BATCH];
    struct iovec riov[BATCH], siov[BATCH][3];
    struct sockaddr_storage rname[BATCH], sname[BATCH];
    PyObject *hold[BATCH][2]; /* per pending reply: the cache entry, the destination name */
    uint16_t sport[BATCH];
    int pending;
} Core;

/* ------------------------------------------------------------------ helpers */

static int
get_limit(Limit *l, PyObject *table)
{
    memset(l, 0, sizeof(*l));
    if (table == Py_None)
        return 0;
    PyObject *d = PyObject_GetAttrString(table, "_d");
    if (d == NULL)
        return -1;
    int r = PyObject_GetBuffer(d, &l->view, PyBUF_WRITABLE | PyBUF_FORMAT | PyBUF_ND);
    Py_DECREF(d);
    if (r < 0)
        return -1;
    if (l->view.itemsize != 8 || l->view.format == NULL || strcmp(l->view.format, "d") != 0) {
        PyBuffer_Release(&l->view);
        PyErr_SetString(PyExc_TypeError, "rate table: _d is not a buffer of doubles");
        return -1;
    }
    l->on = 1;
    l->memo = PyObject_GetAttrString(table, "_memo");
    l->slots = PyObject_GetAttrString(table, "_slots");
    PyObject *off = PyObject_GetAttrString(table, "offset");
    PyObject *rate = PyObject_GetAttrString(table, "rate");
    PyObject *burst = PyObject_GetAttrString(table, "burst");
    if (l->memo == NULL || l->slots == NULL || off == NULL || rate == NULL || burst == NULL
        || !PyDict_Check(l->memo)) {
        Py_XDECREF(off); Py_XDECREF(rate); Py_XDECREF(burst);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "rate table: _memo is not a dict");
        return -1;
    }
    l->offset = PyLong_AsSsize_t(off);
    l->rate = PyFloat_AsDouble(rate);
    l->burst = PyFloat_AsDouble(burst);
    Py_DECREF(off); Py_DECREF(rate); Py_DECREF(burst);
    return PyErr_Occurred() ? -1 : 0;
}

static void
free_limit(Limit *l)
{
    if (l->on)
        PyBuffer_Release(&l->view);
    Py_CLEAR(l->memo);
    Py_CLEAR(l->slots);
    l->on = 0;
}

/* TokenTable.allow(name, now): 1 allowed (both slots debited), 0 not, -1 error */
/* the tokens a slot ([spent, last]) holds at now, as the Python table computes them */
static double
tokens(const double *slot, double burst, double rate, double now)
{
    double last = slot[1], t;
    if (last > now + 60.0)
        return burst;
    t = now > last ? burst - slot[0] + (now - last) * rate : burst - slot[0];
    return t > burst ? burst : t;
}

static int
allow(Limit *l, PyObject *name, double now)
{
    PyObject *got = PyDict_GetItemWithError(l->memo, name);   /* borrowed */
    PyObject *own = NULL;
    if (got == NULL) {
        if (PyErr_Occurred())
            return -1;
        got = own = PyObject_CallOneArg(l->slots, name);
        if (got == NULL)
            return -1;
    }
    if (!PyTuple_Check(got) || PyTuple_GET_SIZE(got) != 2) {
        Py_XDECREF(own);
        PyErr_SetString(PyExc_TypeError, "rate table: slots are not a pair");
        return -1;
    }
    Py_ssize_t pa = PyLong_AsSsize_t(PyTuple_GET_ITEM(got, 0));
    Py_ssize_t pb = PyLong_AsSsize_t(PyTuple_GET_ITEM(got, 1));
    Py_XDECREF(own);
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t a = (pa - l->offset) >> 3, b = (pb - l->offset) >> 3;
    Py_ssize_t n = l->view.len / 8;
    if (a < 0 || b < 0 || a + 1 >= n || b + 1 >= n) {
        PyErr_SetString(PyExc_IndexError, "rate table: slot out of range");
        return -1;
    }
    double *d = (double *)l->view.buf, burst = l->burst, ta, tb;
    ta = tokens(d + a, burst, l->rate, now);
    if (ta < 1.0)
        return 0;
    tb = tokens(d + b, burst, l->rate, now);
    if (tb < 1.0)
        return 0;
    d[a] = burst - (ta - 1.0);
    d[a + 1] = now;
    d[b] = burst - (tb - 1.0);
    d[b + 1] = now;
    return 1;
}

static double
monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    /* as time.monotonic(): nanoseconds as a double, then seconds */
    return (double)((long long)ts.tv_sec * 1000000000LL + ts.tv_nsec) / 1e9;
}

/* the source's host text (uvloop's form: no scope), memoised by raw address */
static PyObject *
host_of(Core *c, const struct sockaddr_storage *sa)   /* new reference */
{
    const void *raw;
    Py_ssize_t len;
    if (sa->ss_family == AF_INET) {
        raw = &((const struct sockaddr_in *)sa)->sin_addr;
        len = 4;
    } else {
        raw = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        len = 16;
    }
    PyObject *key = PyBytes_FromStringAndSize(raw, len);
    if (key == NULL)
        return NULL;
    PyObject *name = PyDict_GetItemWithError(c->src_names, key);
    if (name != NULL) {
        Py_DECREF(key);
        Py_INCREF(name);
        return name;
    }
    if (PyErr_Occurred()) {
        Py_DECREF(key);
        return NULL;
    }
    char buf[INET6_ADDRSTRLEN + 1];
    if (inet_ntop(sa->ss_family, raw, buf, sizeof(buf)) == NULL) {
        Py_DECREF(key);
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    name = PyUnicode_FromString(buf);
    if (name == NULL) {
        Py_DECREF(key);
        return NULL;
    }
    if (PyDict_GET_SIZE(c->src_names) >= NAME_MEMO_MAX)
        PyDict_Clear(c->src_names);
    int r = PyDict_SetItem(c->src_names, key, name);
    Py_DECREF(key);
    if (r < 0) {
        Py_DECREF(name);
        return NULL;
    }
    return name;
}

/* ------------------------------------------------------------- the decision */

enum { HANDOFF = 0, ANSWER = 1, DROP = 2, ERROR = -1 };

typedef struct {
    PyObject *entry;          /* ANSWER: the cache entry (head, records, what, neg, eid), new ref */
    PyObject *name;           /* ANSWER: the ITR-RLOC's text; DROP: the detail; new ref */
    const char *reason;       /* DROP */
    const uint8_t *nonce;     /* ANSWER: 8 bytes inside the request */
    const uint8_t *itr;       /* ANSWER: raw ITR-RLOC (4 or 16 bytes) */
    int sport;                /* ANSWER: the reply's port */
    int neg;
} Out;

/* FastPath.handle for one datagram whose source host text is ``host`` (or NULL: made
 * from ``sa`` when needed).  Mirrors the Python line by line. */
static int
decide(Core *c, const uint8_t *data, Py_ssize_t n, PyObject *host, const struct sockaddr_storage *sa,
       double now, Out *o)
{
    PyObject *hostref = NULL;
    int ret = HANDOFF;
    o->entry = o->name = NULL;
    if (!c->in_sync)
        return HANDOFF;
    /* Shun.blocked: a source whose bad bucket is below one token goes to Python */
    if (PyDict_GET_SIZE(c->shun)) {
        if (host == NULL) {
            host = hostref = host_of(c, sa);
            if (host == NULL)
                return ERROR;
        }
        PyObject *b = PyDict_GetItemWithError(c->shun, host);
        if (b == NULL && PyErr_Occurred())
            goto error;
        if (b != NULL) {
            if (!PyList_Check(b) || PyList_GET_SIZE(b) < 1)
                goto out;
            double tokens = PyFloat_AsDouble(PyList_GET_ITEM(b, 0));
            if (tokens == -1.0 && PyErr_Occurred())
                goto error;
            if (!(tokens >= 1.0))
                goto out;
        }
    }
    if (n < 60)
        goto out;
    uint8_t b0 = data[0];
    if (b0 != 0x80 && b0 != 0x81)
        goto out;
    uint8_t v = data[4];
    Py_ssize_t u;
    uint64_t sum = 0;
    if (v == 0x45) {
        if (data[13] != 17 || (data[10] & 0x3F) || data[11] || ((data[6] << 8) | data[7]) != n - 4)
            goto out;
        u = 24;
        for (int i = 16; i < 24; i += 2)
            sum += (data[i] << 8) | data[i + 1];
    } else if (v >> 4 == 6) {
        if (data[10] != 17 || ((data[8] << 8) | data[9]) != n - 44)
            goto out;
        u = 44;
        for (int i = 12; i < 44; i += 2)
            sum += (data[i] << 8) | data[i + 1];
    } else
        goto out;
    int sport = (data[u] << 8) | data[u + 1];
    Py_ssize_t ulen = (data[u + 4] << 8) | data[u + 5];
    if (ulen != n - u || sport == 4341 || ((data[u + 2] << 8) | data[u + 3]) == 4341
        || !(data[u + 6] || data[u + 7]))
        goto out;
    /* the Python takes the whole segment as one integer modulo 0xFFFF: the same as
     * the sum of its 16-bit words (zero-padded) modulo 0xFFFF */
    Py_ssize_t i;
    for (i = u; i + 1 < n; i += 2)
        sum += (data[i] << 8) | data[i + 1];
    if (i < n)
        sum += data[i] << 8;
    if ((sum + 17 + ulen) % 0xFFFF)
        goto out;
    Py_ssize_t m = u + 8;
    uint32_t w0 = ((uint32_t)data[m] << 24) | (data[m + 1] << 16) | (data[m + 2] << 8) | data[m + 3];
    if (w0 >> 28 != 1 || (w0 & MR_SPECIAL) || (w0 & 0xFF) != 1)
        goto out;
    Py_ssize_t p = m + 12;
    if (p + 2 > n)
        goto out;
    int afi = (data[p] << 8) | data[p + 1];
    if (afi == 1)
        p += 6;
    else if (afi == 2)
        p += 18;
    else if (afi)
        goto out;
    else
        p += 2;
    int want = c->six ? 2 : 1;
    const uint8_t *itr = NULL;
    int itrlen = 0;
    for (unsigned k = 0; k < ((w0 >> 8) & 0x1F) + 1; k++) {
        if (p + 2 > n)
            goto out;
        afi = (data[p] << 8) | data[p + 1];
        if (afi == 1) {
            if (itr == NULL && want == 1) {
                itr = data + p + 2;
                itrlen = 4;
            }
            p += 6;
        } else if (afi == 2) {
            if (itr == NULL && want == 2) {
                itr = data + p + 2;
                itrlen = 16;
            }
            p += 18;
        } else
            goto out;
    }
    /* an ITR-RLOC cut short by the datagram's end: Python slices it shorter; the
     * cache key (after it) then cannot exist, so the Python path decides */
    if (itr == NULL || p + 4 > n || itr + itrlen > data + n)
        goto out;
    PyObject *caches = PyObject_GetAttrString(c->fast, "_c");
    if (caches == NULL)
        goto error;
    if (!PyTuple_Check(caches) || PyTuple_GET_SIZE(caches) != 2) {
        Py_DECREF(caches);
        PyErr_SetString(PyExc_TypeError, "FastPath._c is not a pair");
        goto error;
    }
    PyObject *cache = PyTuple_GET_ITEM(caches, c->six);
    PyObject *key = PyBytes_FromStringAndSize((const char *)data + p + 1, n - p - 1);
    if (key == NULL) {
        Py_DECREF(caches);
        goto error;
    }
    PyObject *e = PyDict_GetItemWithError(cache, key);
    Py_DECREF(key);
    Py_XINCREF(e);
    Py_DECREF(caches);
    if (e == NULL) {
        if (PyErr_Occurred())
            goto error;
        goto out;                 /* a miss: the Python path fills the cache */
    }
    if (!PyTuple_Check(e) || PyTuple_GET_SIZE(e) != 5
        || !PyBytes_Check(PyTuple_GET_ITEM(e, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(e, 1))) {
        Py_DECREF(e);             /* _FULL: the full path answers this EID */
        goto out;
    }
    int neg = PyObject_IsTrue(PyTuple_GET_ITEM(e, 3));
    if (neg < 0) {
        Py_DECREF(e);
        goto error;
    }
    if ((neg && c->local_db) || (b0 == 0x80 && c->serves)) {
        Py_DECREF(e);             /* asked per EID by Python hooks: the Python path */
        goto out;
    }
    c->hit++;
    /* the full path's order: source limit, answer, destination limit */
    if (host == NULL) {
        host = hostref = host_of(c, sa);
        if (host == NULL) {
            Py_DECREF(e);
            goto error;
        }
    }
    int ok = allow(&c->src, host, now);
    if (ok <= 0) {
        Py_DECREF(e);
        if (ok < 0)
            goto error;
        o->reason = "rate-limited";
        Py_INCREF(host);
        o->name = host;
        ret = DROP;
        goto out;
    }
    PyObject *raw = PyBytes_FromStringAndSize((const char *)itr, itrlen);
    if (raw == NULL) {
        Py_DECREF(e);
        goto error;
    }
    PyObject *names = PyObject_GetAttrString(c->fast, "_names");
    PyObject *name = NULL;
    if (names != NULL) {
        name = PyDict_GetItemWithError(names, raw);
        Py_XINCREF(name);
        Py_DECREF(names);
        if (name == NULL && !PyErr_Occurred())
            name = PyObject_CallMethod(c->fast, "_name", "O", raw);
    }
    Py_DECREF(raw);
    if (name == NULL) {
        Py_DECREF(e);
        goto error;
    }
    if (c->dst.on) {
        ok = allow(&c->dst, name, now);
        if (ok <= 0) {
            Py_DECREF(e);
            if (ok < 0) {
                Py_DECREF(name);
                goto error;
            }
            o->reason = "rate-limited-destination";
            o->name = name;
            ret = DROP;
            goto out;
        }
    }
    o->entry = e;
    o->name = name;
    o->nonce = data + m + 4;
    o->itr = itr;
    o->sport = sport;
    o->neg = neg;
    ret = ANSWER;
out:
    Py_XDECREF(hostref);
    return ret;
error:
    Py_XDECREF(hostref);
    return ERROR;
}

/* ------------------------------------------------------------------ the type */

static int
Core_init(Core *c, PyObject *args, PyObject *kw)
{
    static char *kwlist[] = {"fast", "six", "shun", "other", "drop", "send", "fd", NULL};
    PyObject *fast, *shun, *other = Py_None, *drop = Py_None, *send = Py_None;
    int six, fd = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OpO!|OOOi", kwlist, &fast, &six, &PyDict_Type, &shun,
                                     &other, &drop, &send, &fd))
        return -1;
    if (c->fast != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Core is initialised once");
        return -1;
    }
    PyObject *res = PyObject_GetAttrString(fast, "res");
    if (res == NULL)
        return -1;
    PyObject *lim = PyObject_GetAttrString(res, "limiter");
    PyObject *dlim = PyObject_GetAttrString(res, "dest_limiter");
    Py_DECREF(res);
    if (lim == NULL || dlim == NULL) {
        Py_XDECREF(lim);
        Py_XDECREF(dlim);
        return -1;
    }
    int r = lim == Py_None ? (PyErr_SetString(PyExc_TypeError, "no source limiter"), -1)
                           : get_limit(&c->src, lim);
    if (r == 0)
        r = get_limit(&c->dst, dlim);
    Py_DECREF(lim);
    Py_DECREF(dlim);
    if (r < 0) {
        free_limit(&c->src);
        free_limit(&c->dst);
        return -1;
    }
    c->src_names = PyDict_New();
    if (c->src_names == NULL)
        return -1;
    Py_INCREF(fast); c->fast = fast;
    Py_INCREF(shun); c->shun = shun;
    Py_INCREF(other); c->other = other;
    Py_INCREF(drop); c->drop = drop;
    Py_INCREF(send); c->send = send;
    c->six = six;
    c->fd = fd;
    return 0;
}

static void
Core_dealloc(Core *c)
{
    for (int i = 0; i < c->pending; i++) {
        Py_CLEAR(c->hold[i][0]);
        Py_CLEAR(c->hold[i][1]);
    }
    free_limit(&c->src);
    free_limit(&c->dst);
    Py_CLEAR(c->fast);
    Py_CLEAR(c->shun);
    Py_CLEAR(c->other);
    Py_CLEAR(c->drop);
    Py_CLEAR(c->send);
    Py_CLEAR(c->src_names);
    PyMem_RawFree(c->bufs);
    Py_TYPE(c)->tp_free((PyObject *)c);
}

static PyObject *
Core_flags(Core *c, PyObject *args)
{
    if (!PyArg_ParseTuple(args, "ppp", &c->in_sync, &c->local_db, &c->serves))
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *
Core_take_counts(Core *c, PyObject *noargs)
{
    PyObject *r = Py_BuildValue("{sKsKsKsKsKsKsK}", "received", c->received, "hit", c->hit,
                                "proxy-reply", c->proxy, "negative-reply", c->negative,
                                "dropped", c->dropped, "handed", c->handed, "batches", c->batches);
    c->received = c->hit = c->proxy = c->negative = c->dropped = c->handed = c->batches = 0;
    return r;
}

static PyObject *
reply_bytes(const Out *o)
{
    PyObject *head = PyTuple_GET_ITEM(o->entry, 0), *rec = PyTuple_GET_ITEM(o->entry, 1);
    Py_ssize_t hl = PyBytes_GET_SIZE(head), rl = PyBytes_GET_SIZE(rec);
    PyObject *r = PyBytes_FromStringAndSize(NULL, hl + 8 + rl);
    if (r == NULL)
        return NULL;
    char *s = PyBytes_AS_STRING(r);
    memcpy(s, PyBytes_AS_STRING(head), hl);
    memcpy(s + hl, o->nonce, 8);
    memcpy(s + hl + 8, PyBytes_AS_STRING(rec), rl);
    return r;
}

/* handle(data, host, now): what FastPath.handle(data, (host, port), local, now) gives,
 * as None, ("drop", reason, detail) or (name, port, reply, what); counted as drain counts */
static PyObject *
Core_handle(Core *c, PyObject *args)
{
    Py_buffer data;
    PyObject *host;
    double now;
    if (!PyArg_ParseTuple(args, "y*Ud", &data, &host, &now))
        return NULL;
    Out o;
    int r = decide(c, data.buf, data.len, host, NULL, now, &o);
    PyObject *res = NULL;
    if (r == HANDOFF) {
        c->handed++;
        res = Py_NewRef(Py_None);
    } else if (r == DROP) {
        c->received++;
        c->dropped++;
        res = Py_BuildValue("(ssO)", "drop", o.reason, o.name);
    } else if (r == ANSWER) {
        c->received++;
        if (o.neg)
            c->negative++;
        else
            c->proxy++;
        PyObject *b = reply_bytes(&o);
        if (b != NULL)
            res = Py_BuildValue("(OiNO)", o.name, o.sport, b, PyTuple_GET_ITEM(o.entry, 2));
    }
    Py_XDECREF(o.entry);
    Py_XDECREF(o.name);
    PyBuffer_Release(&data);
    return res;
}

/* send the pending replies; what sendmmsg does not take goes through send() */
static int
flush(Core *c)
{
    int n = c->pending, done = 0, rc = 0;
    while (done < n) {
        int k = sendmmsg(c->fd, c->smsg + done, n - done, MSG_DONTWAIT);
        if (k <= 0) {
            if (k < 0 && errno == EINTR)
                continue;
            break;
        }
        done += k;
    }
    for (int i = done; i < n && rc == 0; i++) {
        /* the kernel refused (a full buffer, an unreachable destination): the Python
         * transport queues it or reports the error as for any reply */
        Out o = {.entry = c->hold[i][0], .nonce = c->siov[i][1].iov_base};
        PyObject *b = reply_bytes(&o);
        PyObject *r = b == NULL ? NULL
                                : PyObject_CallFunction(c->send, "N(Oi)", b, c->hold[i][1], (int)c->sport[i]);
        if (r == NULL)
            rc = -1;
        Py_XDECREF(r);
    }
    for (int i = 0; i < n; i++) {
        Py_CLEAR(c->hold[i][0]);
        Py_CLEAR(c->hold[i][1]);
    }
    c->pending = 0;
    return rc;
}

static PyObject *
py_addr(const struct sockaddr_storage *sa, PyObject *host)
{
    if (sa->ss_family == AF_INET)
        return Py_BuildValue("(Oi)", host, ntohs(((const struct sockaddr_in *)sa)->sin_port));
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
    return Py_BuildValue("(OiII)", host, ntohs(s6->sin6_port), ntohl(s6->sin6_flowinfo),
                         s6->sin6_scope_id);
}

static uint16_t
port_of(const struct sockaddr_storage *sa)
{
    return ntohs(sa->ss_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                          : ((const struct sockaddr_in6 *)sa)->sin6_port);
}

/* one received datagram: answered (queued), dropped (reported) or handed to Python */
static int
one(Core *c, int i, Py_ssize_t len)
{
    const uint8_t *data = c->bufs + (size_t)i * SLOT;
    const struct sockaddr_storage *sa = &c->rname[i];
    if (sa->ss_family != AF_INET && sa->ss_family != AF_INET6)
        return 0;
    Out o;
    double now = monotonic();
    int r = decide(c, data, len, NULL, sa, now, &o);
    if (r == ERROR)
        return -1;
    if (r == ANSWER) {
        c->received++;
        if (o.neg)
            c->negative++;
        else
            c->proxy++;
        int j = c->pending++;
        PyObject *head = PyTuple_GET_ITEM(o.entry, 0), *rec = PyTuple_GET_ITEM(o.entry, 1);
        c->siov[j][0].iov_base = PyBytes_AS_STRING(head);
        c->siov[j][0].iov_len = PyBytes_GET_SIZE(head);
        c->siov[j][1].iov_base = (void *)o.nonce;
        c->siov[j][1].iov_len = 8;
        c->siov[j][2].iov_base = PyBytes_AS_STRING(rec);
        c->siov[j][2].iov_len = PyBytes_GET_SIZE(rec);
        c->hold[j][0] = o.entry;
        c->hold[j][1] = o.name;
        c->sport[j] = (uint16_t)o.sport;
        struct sockaddr_storage *d = &c->sname[j];
        memset(d, 0, sizeof(*d));
        socklen_t dl;
        if (c->six) {
            struct sockaddr_in6 *d6 = (struct sockaddr_in6 *)d;
            d6->sin6_family = AF_INET6;
            d6->sin6_port = htons(o.sport);
            memcpy(&d6->sin6_addr, o.itr, 16);
            dl = sizeof(*d6);
        } else {
            struct sockaddr_in *d4 = (struct sockaddr_in *)d;
            d4->sin_family = AF_INET;
            d4->sin_port = htons(o.sport);
            memcpy(&d4->sin_addr, o.itr, 4);
            dl = sizeof(*d4);
        }
        struct msghdr *h = &c->smsg[j].msg_hdr;
        memset(h, 0, sizeof(*h));
        h->msg_name = d;
        h->msg_namelen = dl;
        h->msg_iov = c->siov[j];
        h->msg_iovlen = 3;
        return 0;
    }
    PyObject *host = host_of(c, sa);
    if (host == NULL) {
        Py_XDECREF(o.entry);
        Py_XDECREF(o.name);
        return -1;
    }
    PyObject *res;
    if (r == DROP) {
        c->received++;
        c->dropped++;
        res = PyObject_CallFunction(c->drop, "sOOid", o.reason, o.name, host, (int)port_of(sa), now);
        Py_XDECREF(o.name);
    } else {
        c->handed++;
        PyObject *addr = py_addr(sa, host);
        PyObject *b = PyBytes_FromStringAndSize((const char *)data, len);
        res = addr == NULL || b == NULL ? NULL : PyObject_CallFunctionObjArgs(c->other, b, addr, NULL);
        Py_XDECREF(addr);
        Py_XDECREF(b);
    }
    Py_DECREF(host);
    if (res == NULL)
        return -1;
    Py_DECREF(res);
    return 0;
}

/* drain(): read what the socket holds (at most ROUNDS batches), answer, send.
 * Returns the number of datagrams read. */
static PyObject *
Core_drain(Core *c, PyObject *noargs)
{
    if (c->fd < 0) {
        PyErr_SetString(PyExc_RuntimeError, "Core has no socket");
        return NULL;
    }
    if (c->bufs == NULL) {
        c->bufs = PyMem_RawMalloc((size_t)BATCH * SLOT);
        if (c->bufs == NULL)
            return PyErr_NoMemory();
    }
    long total = 0;
    int err = 0, saved = 0;
    for (int round = 0; round < ROUNDS && !err; round++) {
        for (int i = 0; i < BATCH; i++) {
            c->riov[i].iov_base = c->bufs + (size_t)i * SLOT;
            c->riov[i].iov_len = SLOT;
            struct msghdr *h = &c->rmsg[i].msg_hdr;
            memset(h, 0, sizeof(*h));
            h->msg_name = &c->rname[i];
            h->msg_namelen = sizeof(c->rname[i]);
            h->msg_iov = &c->riov[i];
            h->msg_iovlen = 1;
        }
        int n = recvmmsg(c->fd, c->rmsg, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                saved = errno;
                err = 2;
            }
            break;
        }
        c->batches++;
        total += n;
        for (int i = 0; i < n && !err; i++) {
            if (one(c, i, c->rmsg[i].msg_len) < 0)
                err = 1;
        }
        if (flush(c) < 0 && !err)
            err = 1;
        if (n < BATCH)
            break;
    }
    if (c->pending && flush(c) < 0 && !err)
        err = 1;
    if (err == 2) {
        errno = saved;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (err)
        return NULL;
    return PyLong_FromLong(total);
}

static PyMethodDef Core_methods[] = {
    {"flags", (PyCFunction)Core_flags, METH_VARARGS,
     "flags(in_sync, local_db, serves): the resolver's state for the next datagrams"},
    {"handle", (PyCFunction)Core_handle, METH_VARARGS,
     "handle(data, host, now): FastPath.handle's decision for one datagram"},
    {"drain", (PyCFunction)Core_drain, METH_NOARGS,
     "drain(): read, answer and send what the socket holds; the number read"},
    {"take_counts", (PyCFunction)Core_take_counts, METH_NOARGS,
     "take_counts(): the counts since the last call"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject CoreType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "roles._fastloop.Core",
    .tp_basicsize = sizeof(Core),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The C receive loop of one worker socket (see roles/fastloop.py).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Core_init,
    .tp_dealloc = (destructor)Core_dealloc,
    .tp_methods = Core_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "roles._fastloop",
    "The Map-Resolver fast path's receive loop in C (recvmmsg, cached answers, sendmmsg).", -1, NULL,
};

PyMODINIT_FUNC
PyInit__fastloop(void)
{
    if (PyType_Ready(&CoreType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CoreType);
    if (PyModule_AddObject(m, "Core", (PyObject *)&CoreType) < 0) {
        Py_DECREF(&CoreType);
        Py_DECREF(m);
        return NULL;
    }
    PyModule_AddIntConstant(m, "BATCH", BATCH);
    return m;
}
