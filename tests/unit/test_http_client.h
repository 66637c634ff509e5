/*
 * test_http_client.h — a minimal blocking HTTP/1.1 client over raw loopback sockets for the
 * HTTP tests and the benchmark: one request at a time on a keep-alive connection, responses
 * framed by Content-Length (what our server always sends). Every read has a 5 s timeout, so a
 * test never waits forever.
 */
#ifndef TSR_TEST_HTTP_CLIENT_H
#define TSR_TEST_HTTP_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

typedef struct thc_resp {
    int status;
    char headers[4096];     /* raw header block, NUL-terminated */
    char *body;             /* malloc'd, NUL-terminated; freed by thc_resp_free */
    size_t body_len;
    int closed;             /* server sent Connection: close */
} thc_resp_t;

static inline void thc_resp_free(thc_resp_t *r) {
    free(r->body);
    r->body = NULL;
}

/* Connects to 127.0.0.1:port; returns the fd or -1. */
static inline int thc_connect(unsigned port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static inline int thc_write_all(int fd, const void *p, size_t n) {
    const char *s = p;
    while (n) {
        ssize_t w = send(fd, s, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The value of header `name` in a raw header block, copied into out (n bytes); 0 if found. */
static inline int thc_header(const char *headers, const char *name, char *out, size_t n) {
    size_t nl = strlen(name);
    const char *p = headers;
    while ((p = strstr(p, "\r\n")) != NULL) {
        p += 2;
        if (strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
            const char *v = p + nl + 1;
            while (*v == ' ') v++;
            const char *e = strstr(v, "\r\n");
            size_t len = e ? (size_t)(e - v) : strlen(v);
            if (len >= n) len = n - 1;
            memcpy(out, v, len);
            out[len] = 0;
            return 0;
        }
    }
    return -1;
}

/* Reads one response. head: 1 when the request was HEAD (no body follows). 0 or -1. */
static inline int thc_read_response(int fd, thc_resp_t *r, int head) {
    memset(r, 0, sizeof *r);
    size_t hl = 0;
    /* byte-at-a-time until the blank line would be slow for the benchmark: read chunks and
     * keep the surplus as the start of the body */
    char buf[8192];
    size_t have = 0;
    char *end = NULL;
    while (!end) {
        if (have == sizeof buf) return -1;
        ssize_t n = recv(fd, buf + have, sizeof buf - have, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        have += (size_t)n;
        for (size_t i = 0; i + 4 <= have && !end; i++)
            if (memcmp(buf + i, "\r\n\r\n", 4) == 0) end = buf + i;
    }
    hl = (size_t)(end - buf) + 4;
    if (hl >= sizeof r->headers) return -1;
    memcpy(r->headers, buf, hl);
    r->headers[hl] = 0;
    if (sscanf(r->headers, "HTTP/1.%*d %d", &r->status) != 1) return -1;
    char v[64];
    size_t clen = 0;
    if (thc_header(r->headers, "Content-Length", v, sizeof v) == 0) clen = strtoull(v, NULL, 10);
    if (thc_header(r->headers, "Connection", v, sizeof v) == 0 && strcasecmp(v, "close") == 0)
        r->closed = 1;
    if (head) clen = 0;
    r->body = malloc(clen + 1);
    size_t got = have - hl;
    if (got > clen) got = clen; /* no pipelining: surplus would be a protocol error */
    memcpy(r->body, buf + hl, got);
    while (got < clen) {
        ssize_t n = recv(fd, r->body + got, clen - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            free(r->body);
            r->body = NULL;
            return -1;
        }
        got += (size_t)n;
    }
    r->body[clen] = 0;
    r->body_len = clen;
    return 0;
}

/* Sends a request (extra_headers: "Name: v\r\n..." or NULL) and reads the response. */
static inline int thc_request(int fd, const char *method, const char *path,
                              const char *extra_headers, const void *body, size_t len,
                              thc_resp_t *r) {
    char head[2048];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sContent-Length: %zu\r\n\r\n", method,
                      path, extra_headers ? extra_headers : "", len);
    if (strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0) {
        if (len == 0)
            hn = snprintf(head, sizeof head, "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n", method,
                          path, extra_headers ? extra_headers : "");
    }
    if (thc_write_all(fd, head, (size_t)hn) != 0) return -1;
    if (len && thc_write_all(fd, body, len) != 0) return -1;
    return thc_read_response(fd, r, strcmp(method, "HEAD") == 0);
}

/* One request on a fresh connection, closed afterwards. */
static inline int thc_once(unsigned port, const char *method, const char *path, const char *body,
                           thc_resp_t *r) {
    int fd = thc_connect(port);
    if (fd < 0) return -1;
    int rc = thc_request(fd, method, path, NULL, body, body ? strlen(body) : 0, r);
    close(fd);
    return rc;
}

#endif
