/* gRPC server reflection (v1 and v1alpha) answered from a serialized FileDescriptorSet. */
#include "services/rpc/reflection.h"

#include "common/err.h"
#include "common/log.h"
#include "grpc/reflection/v1/reflection.pb-c.h"

#include <grpc/status.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * The index is built by walking the descriptor bytes with a small protobuf wire reader (no
 * descriptor.proto code needed). Field numbers read, from google/protobuf/descriptor.proto:
 *
 *   FileDescriptorSet        1 file (FileDescriptorProto, repeated)
 *   FileDescriptorProto      1 name, 2 package, 3 dependency (repeated), 4 message_type,
 *                            5 enum_type, 6 service, 7 extension
 *   DescriptorProto          1 name, 2 field, 3 nested_type, 4 enum_type, 6 extension, 8 oneof_decl
 *   FieldDescriptorProto     1 name, 2 extendee, 3 number
 *   OneofDescriptorProto     1 name
 *   EnumDescriptorProto      1 name, 2 value (EnumValueDescriptorProto: 1 name)
 *   ServiceDescriptorProto   1 name, 2 method (MethodDescriptorProto: 1 name)
 * Everything else is skipped.
 */

enum sym_kind {
    SYM_PACKAGE,
    SYM_MESSAGE,
    SYM_FIELD,
    SYM_ONEOF,
    SYM_ENUM,
    SYM_ENUM_VALUE,
    SYM_SERVICE,
    SYM_METHOD,
    SYM_EXTENSION,
};

struct symbol {
    char *name; /* fully qualified, no leading dot */
    int file;
    enum sym_kind kind;
};

/* An extension: which message it extends (fully qualified, no leading dot) and its number. */
struct extension {
    char *extendee;
    int32_t number;
    int file;
};

/* A registration: the index and the server whose services list_services reports. */
struct binding {
    dfs_rpc_reflection *r;
    dfs_rpc_server *srv;
};

struct file {
    char *name;
    const uint8_t *bytes; /* the serialized FileDescriptorProto, inside the borrowed set */
    size_t len;
    int *deps; /* indexes of the imported files */
    size_t ndeps;
};

struct dfs_rpc_reflection {
    struct file *files;
    size_t nfiles;
    struct symbol *syms; /* sorted by name; one entry per name (the first file that declared it) */
    size_t nsyms;
    struct extension *exts;
    size_t nexts;
    struct binding **bindings; /* one per server registered on */
    size_t nbindings;
};

/* ---- a minimal protobuf wire reader ---- */

struct pb {
    const uint8_t *p, *end;
};

static bool pb_varint(struct pb *b, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (b->p >= b->end)
            return false;
        uint8_t c = *b->p++;
        x |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0) {
            *v = x;
            return true;
        }
    }
    return false;
}

/*
 * Read the next field: its number, wire type, and for length-delimited fields the bytes (*sub),
 * for varints the value (*val). Fixed-width fields are skipped over. False at the end or on
 * malformed input (*bad tells which).
 */
static bool pb_next(struct pb *b, uint32_t *num, uint32_t *wt, struct pb *sub, uint64_t *val,
                    bool *bad)
{
    *bad = false;
    if (b->p >= b->end)
        return false;
    uint64_t key, len;
    *bad = true;
    if (!pb_varint(b, &key))
        return false;
    *num = (uint32_t)(key >> 3);
    *wt = (uint32_t)(key & 7);
    switch (*wt) {
    case 0:
        if (!pb_varint(b, val))
            return false;
        break;
    case 1:
        if (b->end - b->p < 8)
            return false;
        b->p += 8;
        break;
    case 2:
        if (!pb_varint(b, &len) || len > (uint64_t)(b->end - b->p))
            return false;
        sub->p = b->p;
        sub->end = b->p + len;
        b->p += len;
        break;
    case 5:
        if (b->end - b->p < 4)
            return false;
        b->p += 4;
        break;
    default:
        return false;
    }
    *bad = false;
    return true;
}

static char *pb_strdup(const struct pb *s)
{
    size_t n = (size_t)(s->end - s->p);
    char *r = malloc(n + 1);
    if (r != NULL) {
        memcpy(r, s->p, n);
        r[n] = '\0';
    }
    return r;
}

/* ---- building the index ---- */

struct builder {
    dfs_rpc_reflection *r;
    int file;
    int rc;
    char *err; /* message for rc */
};

static char *join(const char *scope, const char *name)
{
    size_t a = strlen(scope), b = strlen(name);
    char *s = malloc(a + b + 2);
    if (s == NULL)
        return NULL;
    if (a > 0) {
        memcpy(s, scope, a);
        s[a] = '.';
        memcpy(s + a + 1, name, b + 1);
    } else {
        memcpy(s, name, b + 1);
    }
    return s;
}

/* Add a symbol; takes ownership of name (freed on failure). */
static void add_symbol(struct builder *bd, char *name, enum sym_kind kind)
{
    if (bd->rc != DFS_OK || name == NULL) {
        if (bd->rc == DFS_OK)
            bd->rc = DFS_ENOMEM;
        free(name);
        return;
    }
    dfs_rpc_reflection *r = bd->r;
    struct symbol *v = realloc(r->syms, (r->nsyms + 1) * sizeof *v);
    if (v == NULL) {
        free(name);
        bd->rc = DFS_ENOMEM;
        return;
    }
    r->syms = v;
    r->syms[r->nsyms++] = (struct symbol){name, bd->file, kind};
}

/* Name field (1) of a descriptor message, malloc'd; NULL when absent, malformed or out of memory. */
static char *name_of(struct pb msg, struct builder *bd)
{
    struct pb sub, last = {NULL, NULL};
    uint32_t num, wt;
    uint64_t val;
    bool bad;
    while (pb_next(&msg, &num, &wt, &sub, &val, &bad))
        if (num == 1 && wt == 2)
            last = sub;
    if (bad || last.p == NULL) {
        if (bd->rc == DFS_OK)
            bd->rc = DFS_EINVAL;
        return NULL;
    }
    char *s = pb_strdup(&last);
    if (s == NULL && bd->rc == DFS_OK)
        bd->rc = DFS_ENOMEM;
    return s;
}

/* A field declared as an extension (at file or message scope). */
static void add_extension(struct builder *bd, struct pb field, const char *scope)
{
    char *name = name_of(field, bd);
    if (name == NULL)
        return;
    add_symbol(bd, join(scope, name), SYM_EXTENSION);
    free(name);
    char *extendee = NULL;
    int64_t number = 0;
    struct pb sub;
    uint32_t num, wt;
    uint64_t val;
    bool bad;
    while (pb_next(&field, &num, &wt, &sub, &val, &bad)) {
        if (num == 2 && wt == 2) {
            free(extendee);
            /* ".pkg.Type" -> "pkg.Type" */
            if (sub.p < sub.end && *sub.p == '.')
                sub.p++;
            extendee = pb_strdup(&sub);
        } else if (num == 3 && wt == 0) {
            number = (int64_t)val;
        }
    }
    dfs_rpc_reflection *r = bd->r;
    struct extension *v = extendee != NULL ? realloc(r->exts, (r->nexts + 1) * sizeof *v) : NULL;
    if (v == NULL) {
        free(extendee);
        if (bd->rc == DFS_OK)
            bd->rc = DFS_ENOMEM;
        return;
    }
    r->exts = v;
    r->exts[r->nexts++] = (struct extension){extendee, (int32_t)number, bd->file};
}

static void add_enum(struct builder *bd, struct pb en, const char *scope)
{
    char *name = name_of(en, bd);
    if (name == NULL)
        return;
    add_symbol(bd, join(scope, name), SYM_ENUM);
    free(name);
    struct pb sub;
    uint32_t num, wt;
    uint64_t val;
    bool bad;
    while (bd->rc == DFS_OK && pb_next(&en, &num, &wt, &sub, &val, &bad)) {
        if (num == 2 && wt == 2) {
            /* Enum values are siblings of their enum, as in C++. */
            char *v = name_of(sub, bd);
            if (v != NULL)
                add_symbol(bd, join(scope, v), SYM_ENUM_VALUE);
            free(v);
        }
    }
}

static void add_message(struct builder *bd, struct pb msg, const char *scope)
{
    char *name = name_of(msg, bd);
    if (name == NULL)
        return;
    char *full = join(scope, name);
    free(name);
    if (full == NULL) {
        bd->rc = DFS_ENOMEM;
        return;
    }
    add_symbol(bd, strdup(full), SYM_MESSAGE);
    struct pb sub;
    uint32_t num, wt;
    uint64_t val;
    bool bad;
    while (bd->rc == DFS_OK && pb_next(&msg, &num, &wt, &sub, &val, &bad)) {
        if (wt != 2)
            continue;
        char *n;
        switch (num) {
        case 2: /* field */
        case 8: /* oneof_decl */
            n = name_of(sub, bd);
            if (n != NULL)
                add_symbol(bd, join(full, n), num == 2 ? SYM_FIELD : SYM_ONEOF);
            free(n);
            break;
        case 3:
            add_message(bd, sub, full);
            break;
        case 4:
            add_enum(bd, sub, full);
            break;
        case 6:
            add_extension(bd, sub, full);
            break;
        default:
            break;
        }
    }
    free(full);
}

static void add_service(struct builder *bd, struct pb svc, const char *scope)
{
    char *name = name_of(svc, bd);
    if (name == NULL)
        return;
    char *full = join(scope, name);
    free(name);
    if (full == NULL) {
        bd->rc = DFS_ENOMEM;
        return;
    }
    add_symbol(bd, strdup(full), SYM_SERVICE);
    struct pb sub;
    uint32_t num, wt;
    uint64_t val;
    bool bad;
    while (bd->rc == DFS_OK && pb_next(&svc, &num, &wt, &sub, &val, &bad)) {
        if (num == 2 && wt == 2) {
            char *m = name_of(sub, bd);
            if (m != NULL)
                add_symbol(bd, join(full, m), SYM_METHOD);
            free(m);
        }
    }
    free(full);
}

/* The package and each of its prefixes ("dfs", "dfs.v1") are symbols of the file declaring them. */
static void add_package(struct builder *bd, const char *package)
{
    if (package[0] == '\0')
        return;
    char *p = strdup(package);
    if (p == NULL) {
        bd->rc = DFS_ENOMEM;
        return;
    }
    for (char *dot = p; bd->rc == DFS_OK && dot != NULL;) {
        dot = strchr(dot, '.');
        if (dot != NULL)
            *dot = '\0';
        add_symbol(bd, strdup(p), SYM_PACKAGE);
        if (dot != NULL)
            *dot++ = '.';
    }
    free(p);
}

/* Index one file: its name, package, imports (as names, resolved later) and symbols. */
static void add_file(struct builder *bd, struct pb fd, char ***depnames)
{
    dfs_rpc_reflection *r = bd->r;
    struct file *f = &r->files[bd->file];
    f->bytes = fd.p;
    f->len = (size_t)(fd.end - fd.p);
    char *package = NULL;
    size_t ndeps = 0;
    struct pb sub, walk = fd;
    uint32_t num, wt;
    uint64_t val;
    bool bad;
    /* First pass: name, package, imports (the package scopes everything else). */
    while (bd->rc == DFS_OK && pb_next(&walk, &num, &wt, &sub, &val, &bad)) {
        if (wt != 2)
            continue;
        if (num == 1) {
            free(f->name);
            f->name = pb_strdup(&sub);
        } else if (num == 2) {
            free(package);
            package = pb_strdup(&sub);
        } else if (num == 3) {
            char **v = realloc(*depnames, (ndeps + 1) * sizeof *v);
            if (v == NULL) {
                bd->rc = DFS_ENOMEM;
                break;
            }
            *depnames = v;
            v[ndeps] = pb_strdup(&sub);
            if (v[ndeps++] == NULL)
                bd->rc = DFS_ENOMEM;
        }
    }
    if (bd->rc == DFS_OK && bad)
        bd->rc = dfs_seterr(&bd->err, DFS_EINVAL, "file %d of the descriptor set does not parse",
                            bd->file);
    if (bd->rc == DFS_OK && (f->name == NULL || f->name[0] == '\0'))
        bd->rc =
            dfs_seterr(&bd->err, DFS_EINVAL, "file %d of the descriptor set has no name", bd->file);
    f->ndeps = ndeps;
    if (bd->rc == DFS_OK && package == NULL && (package = strdup("")) == NULL)
        bd->rc = DFS_ENOMEM;
    if (bd->rc == DFS_OK)
        add_package(bd, package);
    walk = fd;
    while (bd->rc == DFS_OK && pb_next(&walk, &num, &wt, &sub, &val, &bad)) {
        if (wt != 2)
            continue;
        switch (num) {
        case 4:
            add_message(bd, sub, package);
            break;
        case 5:
            add_enum(bd, sub, package);
            break;
        case 6:
            add_service(bd, sub, package);
            break;
        case 7:
            add_extension(bd, sub, package);
            break;
        default:
            break;
        }
    }
    free(package);
}

static int cmp_symbol(const void *a, const void *b)
{
    const struct symbol *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    if (c != 0)
        return c;
    return (x->file > y->file) - (x->file < y->file);
}

int dfs_rpc_reflection_create(const void *set, size_t len, dfs_rpc_reflection **out, char **errmsg)
{
    dfs_rpc_reflection *r = calloc(1, sizeof *r);
    if (r == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    struct builder bd = {.r = r, .rc = DFS_OK};
    struct pb all = {set, (const uint8_t *)set + len}, sub;
    uint32_t num, wt;
    uint64_t val;
    bool bad;
    /* Count the files first, so that each gets its slot. */
    size_t n = 0;
    for (struct pb w = all; pb_next(&w, &num, &wt, &sub, &val, &bad);)
        n += num == 1 && wt == 2;
    char ***depnames = calloc(n + 1, sizeof *depnames);
    r->files = calloc(n + 1, sizeof *r->files);
    if (depnames == NULL || r->files == NULL) {
        free(depnames);
        dfs_rpc_reflection_destroy(r);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    r->nfiles = n;
    for (struct pb w = all; bd.rc == DFS_OK && pb_next(&w, &num, &wt, &sub, &val, &bad);) {
        if (num == 1 && wt == 2) {
            add_file(&bd, sub, &depnames[bd.file]);
            bd.file++;
        }
    }
    if (bd.rc == DFS_OK && bad)
        bd.rc = dfs_seterr(&bd.err, DFS_EINVAL, "the descriptor set does not parse");
    if (bd.rc == DFS_OK && n == 0)
        bd.rc = dfs_seterr(&bd.err, DFS_EINVAL, "the descriptor set holds no file");
    /* Resolve imports to file indexes. */
    for (size_t i = 0; i < n && bd.rc == DFS_OK; i++) {
        struct file *f = &r->files[i];
        f->deps = calloc(f->ndeps + 1, sizeof *f->deps);
        if (f->deps == NULL) {
            bd.rc = DFS_ENOMEM;
            break;
        }
        for (size_t d = 0; d < f->ndeps && bd.rc == DFS_OK; d++) {
            f->deps[d] = dfs_rpc_reflection_find_file(r, depnames[i][d]);
            if (f->deps[d] < 0)
                bd.rc = dfs_seterr(&bd.err, DFS_EINVAL,
                                   "%s imports %s, which is not in the descriptor set", f->name,
                                   depnames[i][d]);
        }
    }
    for (size_t i = 0; i < n; i++) {
        for (size_t d = 0; depnames[i] != NULL && d < r->files[i].ndeps; d++)
            free(depnames[i][d]);
        free(depnames[i]);
    }
    free(depnames);
    if (bd.rc == DFS_OK) {
        /* Sort, then keep the first file's entry of every name declared twice. */
        qsort(r->syms, r->nsyms, sizeof *r->syms, cmp_symbol);
        size_t k = 0;
        for (size_t i = 0; i < r->nsyms; i++) {
            if (k > 0 && strcmp(r->syms[k - 1].name, r->syms[i].name) == 0)
                free(r->syms[i].name);
            else
                r->syms[k++] = r->syms[i];
        }
        r->nsyms = k;
    }
    if (bd.rc != DFS_OK) {
        int rc = bd.rc;
        if (bd.err != NULL) {
            dfs_seterr(errmsg, rc, "%s", bd.err);
            free(bd.err);
        } else {
            dfs_seterr(errmsg, rc, "%s",
                       rc == DFS_ENOMEM ? "out of memory" : "the descriptor set does not parse");
        }
        dfs_rpc_reflection_destroy(r);
        return rc;
    }
    *out = r;
    return DFS_OK;
}

void dfs_rpc_reflection_destroy(dfs_rpc_reflection *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->nfiles; i++) {
        free(r->files[i].name);
        free(r->files[i].deps);
    }
    free(r->files);
    for (size_t i = 0; i < r->nsyms; i++)
        free(r->syms[i].name);
    free(r->syms);
    for (size_t i = 0; i < r->nexts; i++)
        free(r->exts[i].extendee);
    free(r->exts);
    for (size_t i = 0; i < r->nbindings; i++)
        free(r->bindings[i]);
    free(r->bindings);
    free(r);
}

/* ---- lookups ---- */

size_t dfs_rpc_reflection_file_count(const dfs_rpc_reflection *r)
{
    return r->nfiles;
}

const char *dfs_rpc_reflection_file_name(const dfs_rpc_reflection *r, size_t i)
{
    return i < r->nfiles ? r->files[i].name : NULL;
}

static const struct symbol *find_symbol(const dfs_rpc_reflection *r, const char *name)
{
    size_t lo = 0, hi = r->nsyms;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(name, r->syms[mid].name);
        if (c == 0)
            return &r->syms[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int dfs_rpc_reflection_find_symbol(const dfs_rpc_reflection *r, const char *symbol)
{
    const struct symbol *s = find_symbol(r, symbol);
    return s != NULL ? s->file : -1;
}

int dfs_rpc_reflection_find_file(const dfs_rpc_reflection *r, const char *name)
{
    for (size_t i = 0; i < r->nfiles; i++)
        if (r->files[i].name != NULL && strcmp(r->files[i].name, name) == 0)
            return (int)i;
    return -1;
}

static void closure_visit(const dfs_rpc_reflection *r, int f, bool *seen, int *out, size_t cap,
                          size_t *n)
{
    if (seen[f])
        return;
    seen[f] = true;
    if (*n < cap)
        out[*n] = f;
    (*n)++;
    for (size_t d = 0; d < r->files[f].ndeps; d++)
        closure_visit(r, r->files[f].deps[d], seen, out, cap, n);
}

size_t dfs_rpc_reflection_closure(const dfs_rpc_reflection *r, int file, int *out, size_t cap)
{
    if (file < 0 || (size_t)file >= r->nfiles)
        return 0;
    bool *seen = calloc(r->nfiles, sizeof *seen);
    if (seen == NULL)
        return 0;
    size_t n = 0;
    closure_visit(r, file, seen, out, cap, &n);
    free(seen);
    return n;
}

/* ---- the stream ---- */

/* One ServerReflectionInfo stream: receive a request, send its answer, repeat (loop thread). */
struct stream {
    dfs_rpc_reflection *r;
    dfs_rpc_server *srv;
    bool finished;
};

static void stream_recv(dfs_rpc_call *call, void *arg, ProtobufCMessage *msg, int status);

static void stream_end(dfs_rpc_call *call, struct stream *s, int code, const char *message)
{
    if (s->finished)
        return;
    s->finished = true;
    dfs_rpc_call_finish(call, code, NULL, message);
}

static void stream_sent(dfs_rpc_call *call, void *arg, bool ok)
{
    struct stream *s = arg;
    if (s->finished)
        return;
    if (!ok) {
        stream_end(call, s, DFS_ECANCELED, "the client went away");
        return;
    }
    int rc = dfs_rpc_call_recv(call, stream_recv, s);
    if (rc != DFS_OK)
        stream_end(call, s, rc, "cannot receive the next request");
}

/* The answer to one request: everything it points to lives until the response is packed. */
struct answer {
    Grpc__Reflection__V1__ServerReflectionResponse resp;
    Grpc__Reflection__V1__ErrorResponse error;
    Grpc__Reflection__V1__FileDescriptorResponse files;
    Grpc__Reflection__V1__ExtensionNumberResponse extnums;
    Grpc__Reflection__V1__ListServiceResponse services;
    char message[400];
};

static void answer_error(struct answer *a, grpc_status_code code, const char *fmt, const char *what)
{
    snprintf(a->message, sizeof a->message, fmt, what);
    a->error.error_code = (int32_t)code;
    a->error.error_message = a->message;
    a->resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
    a->resp.error_response = &a->error;
}

/* Answer with file f and its imports. Returns DFS_ENOMEM or 0; *bufs is freed by the caller. */
static int answer_files(const dfs_rpc_reflection *r, struct answer *a, int f,
                        ProtobufCBinaryData **bufs)
{
    int *idx = calloc(r->nfiles, sizeof *idx);
    *bufs = calloc(r->nfiles, sizeof **bufs);
    if (idx == NULL || *bufs == NULL) {
        free(idx);
        return DFS_ENOMEM;
    }
    size_t n = dfs_rpc_reflection_closure(r, f, idx, r->nfiles);
    for (size_t i = 0; i < n; i++) {
        (*bufs)[i].len = r->files[idx[i]].len;
        (*bufs)[i].data = (uint8_t *)r->files[idx[i]].bytes;
    }
    free(idx);
    a->files.n_file_descriptor_proto = n;
    a->files.file_descriptor_proto = *bufs;
    a->resp.message_response_case =
        GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
    a->resp.file_descriptor_response = &a->files;
    return DFS_OK;
}

/*
 * The services the server has methods for, in order, each once. names[] receives malloc'd names
 * (the caller frees each); returns how many, or -1 when out of memory.
 */
static long served_services(dfs_rpc_server *srv, char **names, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < dfs_rpc_server_method_count(srv) && n < cap; i++) {
        const char *m = dfs_rpc_server_method(srv, i)->name;
        if (m[0] == '/')
            m++;
        const char *slash = strchr(m, '/');
        size_t len = slash != NULL ? (size_t)(slash - m) : strlen(m);
        bool seen = false;
        for (size_t k = 0; k < n && !seen; k++)
            seen = strlen(names[k]) == len && memcmp(names[k], m, len) == 0;
        if (seen)
            continue;
        names[n] = strndup(m, len);
        if (names[n] == NULL) {
            for (size_t k = 0; k < n; k++)
                free(names[k]);
            return -1;
        }
        n++;
    }
    return (long)n;
}

static void respond(dfs_rpc_call *call, struct stream *s,
                    const Grpc__Reflection__V1__ServerReflectionRequest *req)
{
    const dfs_rpc_reflection *r = s->r;
    struct answer a = {
        .resp = GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT,
        .error = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT,
        .files = GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT,
        .extnums = GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT,
        .services = GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT,
    };
    a.resp.valid_host = req->host;
    a.resp.original_request = (Grpc__Reflection__V1__ServerReflectionRequest *)req;
    ProtobufCBinaryData *bufs = NULL;
    Grpc__Reflection__V1__ServiceResponse *svc = NULL, **svcp = NULL;
    char **names = NULL;
    long nnames = 0;
    int rc = DFS_OK;
    const struct symbol *sym;
    int f;
    switch (req->message_request_case) {
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
        f = dfs_rpc_reflection_find_file(r, req->file_by_filename);
        if (f < 0)
            answer_error(&a, GRPC_STATUS_NOT_FOUND, "file not found: %.300s",
                         req->file_by_filename);
        else
            rc = answer_files(r, &a, f, &bufs);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
        sym = find_symbol(r, req->file_containing_symbol);
        if (sym == NULL)
            answer_error(&a, GRPC_STATUS_NOT_FOUND, "symbol not found: %.300s",
                         req->file_containing_symbol);
        else
            rc = answer_files(r, &a, sym->file, &bufs);
        break;
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION: {
        const Grpc__Reflection__V1__ExtensionRequest *x = req->file_containing_extension;
        const char *type = x != NULL ? x->containing_type : "";
        sym = find_symbol(r, type);
        if (sym == NULL || sym->kind != SYM_MESSAGE) {
            answer_error(&a, GRPC_STATUS_NOT_FOUND, "type not found: %.300s", type);
            break;
        }
        f = -1;
        for (size_t i = 0; i < r->nexts && f < 0; i++)
            if (strcmp(r->exts[i].extendee, type) == 0 && r->exts[i].number == x->extension_number)
                f = r->exts[i].file;
        if (f < 0)
            answer_error(&a, GRPC_STATUS_NOT_FOUND, "extension not found: %.300s", type);
        else
            rc = answer_files(r, &a, f, &bufs);
        break;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE: {
        const char *type = req->all_extension_numbers_of_type;
        sym = find_symbol(r, type);
        if (sym == NULL || sym->kind != SYM_MESSAGE) {
            answer_error(&a, GRPC_STATUS_NOT_FOUND, "type not found: %.300s", type);
            break;
        }
        int32_t *nums = calloc(r->nexts + 1, sizeof *nums);
        if (nums == NULL) {
            rc = DFS_ENOMEM;
            break;
        }
        size_t k = 0;
        for (size_t i = 0; i < r->nexts; i++)
            if (strcmp(r->exts[i].extendee, type) == 0)
                nums[k++] = r->exts[i].number;
        a.extnums.base_type_name = (char *)type;
        a.extnums.n_extension_number = k;
        a.extnums.extension_number = nums;
        a.resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
        a.resp.all_extension_numbers_response = &a.extnums;
        break;
    }
    case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES: {
        size_t cap = dfs_rpc_server_method_count(s->srv) + 1;
        names = calloc(cap, sizeof *names);
        svc = calloc(cap, sizeof *svc);
        svcp = calloc(cap, sizeof *svcp);
        nnames =
            names != NULL && svc != NULL && svcp != NULL ? served_services(s->srv, names, cap) : -1;
        if (nnames < 0) {
            nnames = 0;
            rc = DFS_ENOMEM;
            break;
        }
        for (long i = 0; i < nnames; i++) {
            grpc__reflection__v1__service_response__init(&svc[i]);
            svc[i].name = names[i];
            svcp[i] = &svc[i];
        }
        a.services.n_service = (size_t)nnames;
        a.services.service = svcp;
        a.resp.message_response_case =
            GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
        a.resp.list_services_response = &a.services;
        break;
    }
    default:
        answer_error(&a, GRPC_STATUS_UNIMPLEMENTED, "%s",
                     "this reflection request is not implemented (no request set?)");
        break;
    }
    if (rc == DFS_OK)
        rc = dfs_rpc_call_send(call, &a.resp.base, stream_sent, s);
    free(bufs);
    free(a.extnums.extension_number);
    for (long i = 0; i < nnames; i++)
        free(names[i]);
    free(names);
    free(svc);
    free(svcp);
    if (rc != DFS_OK)
        stream_end(call, s, rc, "cannot answer the reflection request");
}

static void stream_recv(dfs_rpc_call *call, void *arg, ProtobufCMessage *msg, int status)
{
    struct stream *s = arg;
    if (s->finished) {
        if (msg != NULL)
            protobuf_c_message_free_unpacked(msg, NULL);
        return;
    }
    if (status == DFS_EINVAL) {
        stream_end(call, s, DFS_EINVAL, "the request does not parse as a ServerReflectionRequest");
        return;
    }
    if (status != DFS_OK || msg == NULL) {
        /* The client closed its side (or the call is over): done. */
        stream_end(call, s, status == DFS_OK ? DFS_OK : status, NULL);
        return;
    }
    respond(call, s, (const Grpc__Reflection__V1__ServerReflectionRequest *)msg);
    protobuf_c_message_free_unpacked(msg, NULL);
}

static void stream_cancelled(dfs_rpc_call *call, void *arg)
{
    stream_end(call, arg, DFS_ECANCELED, "cancelled");
}

static void handle_bound(dfs_rpc_call *call, void *ctx)
{
    const struct binding *b = ctx;
    struct stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        dfs_rpc_call_fail(call, DFS_ENOMEM, "out of memory");
        return;
    }
    s->r = b->r;
    s->srv = b->srv;
    dfs_rpc_call_set_state(call, s, free);
    dfs_rpc_call_on_cancel(call, stream_cancelled, s);
    int rc = dfs_rpc_call_recv(call, stream_recv, s);
    if (rc != DFS_OK)
        stream_end(call, s, rc, "cannot receive");
}

int dfs_rpc_reflection_register(dfs_rpc_reflection *r, dfs_rpc_server *srv, char **errmsg)
{
    struct binding **v = realloc(r->bindings, (r->nbindings + 1) * sizeof *v);
    if (v == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    r->bindings = v;
    struct binding *b = malloc(sizeof *b);
    if (b == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    *b = (struct binding){r, srv};
    r->bindings[r->nbindings++] = b;
    /* v1alpha has the same messages field for field: the v1 types parse and pack both. */
    const struct dfs_rpc_method methods[] = {
        {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", DFS_RPC_BIDI_STREAMING,
         &grpc__reflection__v1__server_reflection_request__descriptor, handle_bound, b, 0},
        {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", DFS_RPC_BIDI_STREAMING,
         &grpc__reflection__v1__server_reflection_request__descriptor, handle_bound, b, 0},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        int rc = dfs_rpc_server_add_method(srv, &methods[i], errmsg);
        if (rc != DFS_OK)
            return rc;
    }
    return DFS_OK;
}
