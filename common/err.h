/* Status codes shared by every dfs module, and the error-message convention. */
#ifndef DFS_COMMON_ERR_H
#define DFS_COMMON_ERR_H

/*
 * Every fallible dfs function returns an int: DFS_OK (0) on success, or one of the negative codes
 * below. Each code maps to exactly one gRPC status at the service edge (services/rpc/status.h).
 *
 * Functions that can say more take a trailing `char **errmsg`. On failure they store a one-line,
 * human-readable message there, which the caller frees with free(). errmsg may be NULL when the
 * caller does not want the text; on success *errmsg is left untouched.
 */
enum {
    DFS_OK = 0,
    DFS_EINVAL = -1,     /* bad argument or request: INVALID_ARGUMENT */
    DFS_ENOTFOUND = -2,  /* no such file, fragment or node: NOT_FOUND */
    DFS_EEXIST = -3,     /* already exists: ALREADY_EXISTS */
    DFS_EUNAVAIL = -4,   /* peer unreachable, shutting down: UNAVAILABLE */
    DFS_EDATALOSS = -5,  /* checksum mismatch, unrecoverable data: DATA_LOSS */
    DFS_ENOSPC = -6,     /* disk full, quota, too large: RESOURCE_EXHAUSTED */
    DFS_EUNAUTH = -7,    /* missing or bad credentials: UNAUTHENTICATED */
    DFS_EPERM = -8,      /* not allowed: PERMISSION_DENIED */
    DFS_EIO = -9,        /* local I/O error: INTERNAL */
    DFS_ENOMEM = -10,    /* out of memory: RESOURCE_EXHAUSTED */
    DFS_ETIMEDOUT = -11, /* deadline passed: DEADLINE_EXCEEDED */
    DFS_ECANCELED = -12, /* canceled by the caller: CANCELLED */
    DFS_EPRECOND = -13,  /* state does not allow it (too few nodes...): FAILED_PRECONDITION */
    DFS_EINTERNAL = -14, /* our own bug or an unexpected state: INTERNAL */
    DFS_ERANGE = -15,    /* offset or length outside the object: OUT_OF_RANGE */
    DFS_EABORTED = -16,  /* lost a race (concurrent change), retry may work: ABORTED */
};

/* A short fixed description of a code ("invalid argument"); never NULL. */
const char *dfs_strerror(int code);

/*
 * Format a message into *errmsg (freeing what was there) and return `code`, so that failure paths
 * read `return dfs_seterr(errmsg, DFS_EINVAL, "bad id %s", id);`. With errmsg NULL it only returns
 * code. If the message cannot be allocated *errmsg becomes NULL.
 */
int dfs_seterr(char **errmsg, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Like dfs_seterr, appending ": strerror(errnum)". */
int dfs_seterr_errno(char **errmsg, int code, int errnum, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * Prefix an existing message: *errmsg becomes "<prefix>: <old>" (or just the prefix when there was
 * none). Returns code.
 */
int dfs_prefixerr(char **errmsg, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * What someone typed or sent, fit to quote in a one-line error message: an error that names a bad
 * input quotes it through dfs_quote, so a 10 KB argument, path or request field comes back as its
 * first DFS_QUOTE_MAX bytes (cut on a character boundary) followed by "...", and control
 * characters and bytes that are not UTF-8 as '?'. Returns q->s (s NULL gives "").
 *
 *     struct dfs_quote q;
 *     return dfs_seterr(err, DFS_EINVAL, "unknown option '%s'", dfs_quote(arg, &q));
 */
#define DFS_QUOTE_MAX 64
struct dfs_quote {
    char s[DFS_QUOTE_MAX + 4];
};
const char *dfs_quote(const char *s, struct dfs_quote *q);

/* Map an errno value from a system call to the closest DFS_E code (ENOSPC -> DFS_ENOSPC, ...). */
int dfs_err_from_errno(int errnum);

#endif /* DFS_COMMON_ERR_H */
