/* The forwarding path's per-subscriber work in C (media.fanout): header rewrite, SRTP protect and
 * sending, for a batch of packets at once, with sendmmsg per socket.
 *
 * SRTP is pylibsrtp's own libsrtp: the caller passes the address of the srtp_protect that
 * pylibsrtp's cffi module links statically, and each session's srtp_t, so contexts and the code
 * that reads them always come from the same library build (media.fanout checks its signature).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>

/* A datagram's buffer: the plain packet plus room for pylibsrtp's longest trailer. */
#define SLOT_SIZE 2048
/* Messages per sendmmsg call. */
#define MMSG_CHUNK 64

typedef int (*srtp_protect_fn)(void *ctx, void *rtp_hdr, int *len_ptr);

typedef struct {
    void *ctx;
    int fd;
    const char *addr;
    Py_ssize_t addr_len;
    int length; /* of the protected datagram; -1 when it could not be made */
    int sent; /* 0: not yet, -1: being sent, 1: sent, 2: left for the transport */
} Item;

/* entry: ((ctx, fd, sockaddr), (template, send_time_at, marker_pt, seq, ts, ssrc, payload,
 *          send_time)) */
static int parse_entry(PyObject *entry, Item *item, unsigned char *slot, Py_ssize_t room)
{
    unsigned long long ctx;
    int fd, send_time_at, marker_pt;
    unsigned int seq, ssrc, send_time;
    unsigned long ts;
    PyObject *addr;
    const char *template, *payload;
    Py_ssize_t template_len, payload_len;

    if (!PyTuple_Check(entry)) {
        PyErr_SetString(PyExc_TypeError, "an entry must be a tuple");
        return -1;
    }
    if (!PyArg_ParseTuple(entry, "(KiO)(y#iiIkIy#I)", &ctx, &fd, &addr, &template, &template_len,
                          &send_time_at, &marker_pt, &seq, &ts, &ssrc, &payload, &payload_len,
                          &send_time)) {
        return -1;
    }
    item->ctx = (void *)(uintptr_t)ctx;
    item->fd = fd;
    item->sent = 0;
    item->length = -1;
    if (fd >= 0) {
        if (!PyBytes_Check(addr)) {
            PyErr_SetString(PyExc_TypeError, "sockaddr must be bytes");
            return -1;
        }
        item->addr = PyBytes_AS_STRING(addr);
        item->addr_len = PyBytes_GET_SIZE(addr);
    }
    if (template_len < 12 || template_len + payload_len > room) {
        return 0; /* too long for the session's buffer: not sent, like the Python path */
    }
    memcpy(slot, template, template_len);
    slot[1] = (unsigned char)marker_pt;
    slot[2] = (unsigned char)(seq >> 8);
    slot[3] = (unsigned char)seq;
    slot[4] = (unsigned char)(ts >> 24);
    slot[5] = (unsigned char)(ts >> 16);
    slot[6] = (unsigned char)(ts >> 8);
    slot[7] = (unsigned char)ts;
    slot[8] = (unsigned char)(ssrc >> 24);
    slot[9] = (unsigned char)(ssrc >> 16);
    slot[10] = (unsigned char)(ssrc >> 8);
    slot[11] = (unsigned char)ssrc;
    if (send_time_at >= 12 && send_time_at + 3 <= template_len) {
        slot[send_time_at] = (unsigned char)(send_time >> 16);
        slot[send_time_at + 1] = (unsigned char)(send_time >> 8);
        slot[send_time_at + 2] = (unsigned char)send_time;
    }
    memcpy(slot + template_len, payload, payload_len);
    item->length = (int)(template_len + payload_len);
    return 0;
}

/* Send the items of `fd` (from `first` on) with sendmmsg; a message the kernel refuses is left
 * unsent for the caller to hand to the transport. */
static void send_fd(Item *items, unsigned char *slots, Py_ssize_t count, Py_ssize_t first)
{
    struct mmsghdr msgs[MMSG_CHUNK];
    struct iovec iovs[MMSG_CHUNK];
    Py_ssize_t indices[MMSG_CHUNK];
    int fd = items[first].fd;
    Py_ssize_t i = first;

    while (i < count) {
        int n = 0;
        for (; i < count && n < MMSG_CHUNK; i++) {
            Item *item = &items[i];
            if (item->fd != fd || item->length < 0 || item->sent) {
                continue;
            }
            item->sent = -1; /* taken: sent or left for the transport */
            iovs[n].iov_base = slots + i * SLOT_SIZE;
            iovs[n].iov_len = (size_t)item->length;
            memset(&msgs[n].msg_hdr, 0, sizeof(struct msghdr));
            msgs[n].msg_hdr.msg_name = (void *)item->addr;
            msgs[n].msg_hdr.msg_namelen = (socklen_t)item->addr_len;
            msgs[n].msg_hdr.msg_iov = &iovs[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            indices[n] = i;
            n++;
        }
        int done = 0;
        while (done < n) {
            int r;
#ifdef __linux__
            r = sendmmsg(fd, msgs + done, (unsigned int)(n - done), 0);
#else
            r = -1;
            errno = ENOSYS;
#endif
            if (r < 0 && (errno == ENOSYS || errno == EINTR)) {
                /* no sendmmsg: one sendto for the first message */
                r = sendto(fd, iovs[done].iov_base, iovs[done].iov_len, 0,
                           msgs[done].msg_hdr.msg_name, msgs[done].msg_hdr.msg_namelen) < 0
                        ? -1
                        : 1;
            }
            if (r <= 0) {
                /* the first message failed (buffer full, unreachable...): the transport
                 * gets it, with its own buffering and error reporting */
                items[indices[done]].sent = 2;
                done++;
                continue;
            }
            for (int k = 0; k < r; k++) {
                items[indices[done + k]].sent = 1;
            }
            done += r;
        }
    }
}

static PyObject *fanout(PyObject *self, PyObject *args)
{
    unsigned long long protect_address;
    Py_ssize_t room;
    PyObject *entries;

    if (!PyArg_ParseTuple(args, "KnO!", &protect_address, &room, &PyList_Type, &entries)) {
        return NULL;
    }
    if (room <= 0 || room + 144 > SLOT_SIZE) {
        PyErr_SetString(PyExc_ValueError, "room does not fit a slot");
        return NULL;
    }
    srtp_protect_fn protect = (srtp_protect_fn)(uintptr_t)protect_address;
    Py_ssize_t count = PyList_GET_SIZE(entries);
    Item *items = PyMem_Calloc(count ? count : 1, sizeof(Item));
    unsigned char *slots = PyMem_Malloc((count ? count : 1) * SLOT_SIZE);
    PyObject *result = NULL;
    if (items == NULL || slots == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        if (parse_entry(PyList_GET_ITEM(entries, i), &items[i], slots + i * SLOT_SIZE, room) < 0) {
            goto done;
        }
        if (items[i].length >= 0) {
            int length = items[i].length;
            if (protect(items[i].ctx, slots + i * SLOT_SIZE, &length) != 0) {
                items[i].length = -1;
            } else {
                items[i].length = length;
            }
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        if (items[i].fd >= 0 && items[i].length >= 0 && items[i].sent == 0) {
            send_fd(items, slots, count, i);
        }
    }
    Py_END_ALLOW_THREADS
    result = PyList_New(count);
    if (result == NULL) {
        goto done;
    }
    for (Py_ssize_t i = 0; i < count; i++) {
        PyObject *value;
        if (items[i].length < 0) {
            value = Py_NewRef(Py_None);
        } else if (items[i].sent == 1) {
            value = PyLong_FromLong(items[i].length);
        } else {
            value = PyBytes_FromStringAndSize((const char *)slots + i * SLOT_SIZE,
                                              items[i].length);
        }
        if (value == NULL) {
            Py_CLEAR(result);
            goto done;
        }
        PyList_SET_ITEM(result, i, value);
    }
done:
    PyMem_Free(items);
    PyMem_Free(slots);
    return result;
}

static PyObject *sockaddr(PyObject *self, PyObject *args)
{
    const char *host;
    int port;
    if (!PyArg_ParseTuple(args, "si", &host, &port)) {
        return NULL;
    }
    struct sockaddr_storage storage;
    memset(&storage, 0, sizeof(storage));
    socklen_t length;
    struct sockaddr_in *v4 = (struct sockaddr_in *)&storage;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&storage;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        length = sizeof(*v4);
    } else if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        length = sizeof(*v6);
    } else {
        PyErr_Format(PyExc_ValueError, "not a numeric address: %s", host);
        return NULL;
    }
    return PyBytes_FromStringAndSize((const char *)&storage, length);
}

static PyMethodDef methods[] = {
    {"fanout", fanout, METH_VARARGS,
     "fanout(srtp_protect_address, room, entries) -> list: rewrite, protect and send each entry;"
     " per entry its datagram's length (sent), the datagram (for the caller to send) or None"},
    {"sockaddr", sockaddr, METH_VARARGS,
     "sockaddr(host, port) -> bytes: a numeric address as a struct sockaddr"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "media._fastpath", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastpath(void)
{
    return PyModule_Create(&module);
}
