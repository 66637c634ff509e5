/*
 * registry.c — the config registry on local files (registry.h).
 */
#include "tsr/registry.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "tsr/mem.h"

struct tsr_registry {
    char *dir;
    pthread_mutex_t mu;
    tsr_reg_entry_t *v;
    size_t n, cap;
};

static int64_t now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void entry_copy(tsr_reg_entry_t *dst, const tsr_reg_entry_t *src) {
    *dst = *src;
    dst->name = tsr_strdup(src->name);
    dst->team = tsr_strdup(src->team ? src->team : "");
    dst->text = tsr_strndup(src->text, src->text_len);
}

void tsr_reg_entry_free(tsr_reg_entry_t *e) {
    if (!e) return;
    free(e->name);
    free(e->team);
    free(e->text);
    memset(e, 0, sizeof *e);
}

void tsr_reg_entries_free(tsr_reg_entry_t *v, size_t n) {
    for (size_t i = 0; i < n; i++) tsr_reg_entry_free(&v[i]);
    free(v);
}

static void escape_name(const char *name, char *out, size_t cap) {
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 4 < cap; p++) {
        unsigned char c = *p;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '.' || c == '-')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, cap - o, "%%%02X", c);
    }
    out[o] = 0;
}

static char *entry_path(const tsr_registry_t *r, const char *name, const char *suffix) {
    char esc[1024];
    escape_name(name, esc, sizeof esc);
    size_t n = strlen(r->dir) + strlen(esc) + strlen(suffix) + 2;
    char *p = tsr_malloc(n);
    snprintf(p, n, "%s/%s%s", r->dir, esc, suffix);
    return p;
}

void tsr_reg_entry_encode(const tsr_reg_entry_t *e, tsr_buf_t *out) {
    json_t *h = json_pack("{s:s, s:i, s:s, s:b, s:I, s:I}", "name", e->name, "kind", (int)e->kind,
                          "team", e->team ? e->team : "", "online", e->online, "version",
                          (json_int_t)e->version, "applied_at_millis", (json_int_t)e->applied_at_ms);
    char *line = json_dumps(h, JSON_COMPACT);
    json_decref(h);
    tsr_buf_puts(out, line);
    tsr_buf_append(out, "\n", 1);
    tsr_buf_append(out, e->text, e->text_len);
    free(line);
}

int tsr_reg_entry_decode(const char *s, size_t n, const char *label, tsr_reg_entry_t *e,
                         tsr_error_t *err) {
    memset(e, 0, sizeof *e);
    const char *nl = memchr(s, '\n', n);
    json_error_t je;
    json_t *h = nl ? json_loadb(s, (size_t)(nl - s), 0, &je) : NULL;
    const char *name = NULL, *team = "";
    json_int_t kind = 0, version = 0, at = 0;
    int online = 0;
    if (!h || json_unpack(h, "{s:s, s:I, s?s, s?b, s:I, s:I}", "name", &name, "kind", &kind, "team",
                          &team, "online", &online, "version", &version, "applied_at_millis", &at)) {
        if (h) json_decref(h);
        return tsr_error_set(err, TSR_ECORRUPT, "%s: not a registry entry (bad header line)", label);
    }
    e->name = tsr_strdup(name);
    e->team = tsr_strdup(team);
    e->kind = (tsr_conf_kind_t)kind;
    e->online = online;
    e->version = version;
    e->applied_at_ms = at;
    e->text_len = n - (size_t)(nl + 1 - s);
    e->text = tsr_strndup(nl + 1, e->text_len);
    json_decref(h);
    return 0;
}

static int write_entry(tsr_registry_t *r, const tsr_reg_entry_t *e, tsr_error_t *err) {
    tsr_buf_t rec;
    tsr_buf_init(&rec);
    tsr_reg_entry_encode(e, &rec);
    char *path = entry_path(r, e->name, ".entry");
    char *tmp = entry_path(r, e->name, ".entry.tmp");
    int rc = 0;
    FILE *f = fopen(tmp, "w");
    if (!f) {
        rc = tsr_error_set(err, TSR_EIO, "%s: %s", tmp, strerror(errno));
    } else {
        fwrite(rec.data, 1, rec.len, f);
        if (fflush(f) != 0 || fsync(fileno(f)) != 0) rc = tsr_error_set(err, TSR_EIO, "%s: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && rc == 0) rc = tsr_error_set(err, TSR_EIO, "%s: %s", tmp, strerror(errno));
        if (rc == 0 && rename(tmp, path) != 0) rc = tsr_error_set(err, TSR_EIO, "%s: %s", path, strerror(errno));
        if (rc) unlink(tmp);
    }
    tsr_buf_free(&rec);
    free(path);
    free(tmp);
    return rc;
}

static int read_entry(const char *path, tsr_reg_entry_t *e, tsr_error_t *err) {
    memset(e, 0, sizeof *e);
    FILE *f = fopen(path, "r");
    if (!f) return tsr_error_set(err, TSR_EIO, "%s: %s", path, strerror(errno));
    tsr_buf_t b;
    tsr_buf_init(&b);
    char chunk[8192];
    size_t k;
    while ((k = fread(chunk, 1, sizeof chunk, f)) > 0) tsr_buf_append(&b, chunk, k);
    fclose(f);
    int rc = tsr_reg_entry_decode(tsr_buf_cstr(&b), b.len, path, e, err);
    tsr_buf_free(&b);
    return rc;
}

static int cmp_entry(const void *a, const void *b) {
    return strcmp(((const tsr_reg_entry_t *)a)->name, ((const tsr_reg_entry_t *)b)->name);
}

static void push(tsr_registry_t *r, const tsr_reg_entry_t *e) {
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->v = tsr_realloc(r->v, r->cap * sizeof *r->v);
    }
    r->v[r->n++] = *e;
    qsort(r->v, r->n, sizeof *r->v, cmp_entry);
}

static tsr_reg_entry_t *find(tsr_registry_t *r, const char *name) {
    if (r->n == 0) return NULL;
    tsr_reg_entry_t key;
    key.name = (char *)name;
    return bsearch(&key, r->v, r->n, sizeof *r->v, cmp_entry);
}

int tsr_registry_open(const char *dir, tsr_registry_t **out, tsr_error_t *err) {
    *out = NULL;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return tsr_error_set(err, TSR_EIO, "%s: %s", dir, strerror(errno));
    DIR *d = opendir(dir);
    if (!d) return tsr_error_set(err, TSR_EIO, "%s: %s", dir, strerror(errno));
    tsr_registry_t *r = tsr_calloc(1, sizeof(*r));
    r->dir = tsr_strdup(dir);
    pthread_mutex_init(&r->mu, NULL);
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        size_t n = strlen(de->d_name);
        if (n < 6 || strcmp(de->d_name + n - 6, ".entry") != 0) continue;
        size_t pn = strlen(dir) + n + 2;
        char *path = tsr_malloc(pn);
        snprintf(path, pn, "%s/%s", dir, de->d_name);
        tsr_reg_entry_t e;
        rc = read_entry(path, &e, err);
        free(path);
        if (rc == 0) push(r, &e);
    }
    closedir(d);
    if (rc) {
        tsr_registry_close(r);
        return rc;
    }
    *out = r;
    return 0;
}

void tsr_registry_close(tsr_registry_t *r) {
    if (!r) return;
    tsr_reg_entries_free(r->v, r->n);
    pthread_mutex_destroy(&r->mu);
    free(r->dir);
    free(r);
}

int tsr_registry_put(tsr_registry_t *r, const tsr_config_t *conf, const char *text, size_t n,
                     tsr_reg_entry_t *out, int *created, int *unchanged, tsr_error_t *err) {
    const tsr_conf_metadata_t *m = tsr_config_metadata(conf);
    if (!m || !m->name || !m->name[0]) return tsr_error_set(err, TSR_EINVAL, "config has no metaData.name");
    pthread_mutex_lock(&r->mu);
    tsr_reg_entry_t *old = find(r, m->name);
    *created = old == NULL;
    *unchanged = old && old->text_len == n && memcmp(old->text, text, n) == 0;
    int rc = 0;
    if (*unchanged) {
        if (out) entry_copy(out, old);
        pthread_mutex_unlock(&r->mu);
        return 0;
    }
    tsr_reg_entry_t e;
    e.name = (char *)m->name;
    e.kind = conf->kind;
    e.team = (char *)(m->team ? m->team : "");
    e.online = m->online;
    e.version = old ? old->version + 1 : 1;
    e.applied_at_ms = now_ms();
    e.text = (char *)text;
    e.text_len = n;
    rc = write_entry(r, &e, err);
    if (rc == 0) {
        tsr_reg_entry_t copy;
        entry_copy(&copy, &e);
        if (old) {
            tsr_reg_entry_free(old);
            *old = copy;
        } else {
            push(r, &copy);
        }
        if (out) entry_copy(out, &e);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

int tsr_registry_get(tsr_registry_t *r, const char *name, tsr_reg_entry_t *out, tsr_error_t *err) {
    pthread_mutex_lock(&r->mu);
    tsr_reg_entry_t *e = find(r, name);
    if (e) entry_copy(out, e);
    pthread_mutex_unlock(&r->mu);
    return e ? 0 : tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s'", name);
}

int tsr_registry_delete(tsr_registry_t *r, const char *name, tsr_reg_entry_t *out, tsr_error_t *err) {
    pthread_mutex_lock(&r->mu);
    tsr_reg_entry_t *e = find(r, name);
    int rc = 0;
    if (!e) {
        rc = tsr_error_set(err, TSR_ENOTFOUND, "no config named '%s'", name);
    } else {
        char *path = entry_path(r, name, ".entry");
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = tsr_error_set(err, TSR_EIO, "%s: %s", path, strerror(errno));
        } else {
            if (out) entry_copy(out, e);
            tsr_reg_entry_free(e);
            size_t i = (size_t)(e - r->v);
            memmove(r->v + i, r->v + i + 1, (r->n - i - 1) * sizeof *r->v);
            r->n--;
        }
        free(path);
    }
    pthread_mutex_unlock(&r->mu);
    return rc;
}

size_t tsr_registry_list(tsr_registry_t *r, tsr_conf_kind_t kind, tsr_reg_entry_t **out) {
    pthread_mutex_lock(&r->mu);
    tsr_reg_entry_t *v = tsr_calloc(r->n ? r->n : 1, sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i < r->n; i++)
        if (kind == 0 || r->v[i].kind == kind) entry_copy(&v[n++], &r->v[i]);
    pthread_mutex_unlock(&r->mu);
    *out = v;
    return n;
}

size_t tsr_registry_count(tsr_registry_t *r) {
    pthread_mutex_lock(&r->mu);
    size_t n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n;
}
