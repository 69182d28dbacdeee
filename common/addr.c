/* host:port addresses: checks, splitting, and the bound port put back in. */
#include "common/addr.h"

#include "common/err.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool dfs_addr_valid(const char *s, size_t max_len)
{
    size_t n = strnlen(s, max_len + 1);
    if (n == 0 || n > max_len)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return false;
    }
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s || colon[1] == '\0')
        return false;
    unsigned long port = 0;
    for (const char *q = colon + 1; *q != '\0'; q++) {
        if (*q < '0' || *q > '9')
            return false;
        port = port * 10 + (unsigned long)(*q - '0');
        if (port > 65535)
            return false;
    }
    return port > 0;
}

static int fault(enum dfs_addr_fault *why, enum dfs_addr_fault f)
{
    if (why != NULL)
        *why = f;
    return DFS_EINVAL;
}

int dfs_addr_split(const char *s, char *host, size_t hcap, char *port, size_t pcap,
                   enum dfs_addr_fault *why)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon[1] == '\0')
        return fault(why, DFS_ADDR_NO_PORT);
    const char *h = s;
    size_t hl = (size_t)(colon - s);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    } else if (memchr(h, ':', hl) != NULL) {
        return fault(why, DFS_ADDR_UNBRACKETED);
    }
    size_t pl = strlen(colon + 1);
    if (hl >= hcap || pl >= pcap)
        return fault(why, DFS_ADDR_TOO_LONG);
    memcpy(host, h, hl);
    host[hl] = '\0';
    memcpy(port, colon + 1, pl + 1);
    for (const char *p = port; *p != '\0'; p++)
        if (*p < '0' || *p > '9')
            return fault(why, DFS_ADDR_BAD_PORT);
    if (strtol(port, NULL, 10) > 65535)
        return fault(why, DFS_ADDR_BAD_PORT);
    return DFS_OK;
}

int dfs_addr_host(const char *s, char *host, size_t cap)
{
    const char *end;
    if (s[0] == '[') {
        end = strchr(s, ']');
        if (end == NULL)
            return DFS_EINVAL;
        s++;
    } else {
        end = strrchr(s, ':');
        if (end == NULL)
            end = s + strlen(s);
    }
    size_t n = (size_t)(end - s);
    if (n == 0 || n >= cap)
        return DFS_EINVAL;
    memcpy(host, s, n);
    host[n] = '\0';
    return DFS_OK;
}

long dfs_addr_host_len(const char *s)
{
    const char *colon = strrchr(s, ':');
    return colon != NULL ? (long)(colon - s) : -1;
}

int dfs_addr_with_port(const char *s, int port, char *out, size_t cap)
{
    long hl = dfs_addr_host_len(s);
    if (hl < 0) {
        if (cap > 0)
            out[0] = '\0';
        return DFS_EINVAL;
    }
    int n = snprintf(out, cap, "%.*s:%d", (int)hl, s, port);
    return n < 0 || (size_t)n >= cap ? DFS_ENOSPC : DFS_OK;
}

int dfs_addr_list_split(const char *s, char ***items, size_t *n, char **errmsg)
{
    size_t cap = 1;
    for (const char *q = s; *q != '\0'; q++)
        cap += *q == ',';
    char **v = calloc(cap + 1, sizeof *v);
    if (v == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    size_t k = 0;
    const char *p = s;
    for (;;) {
        const char *end = strchr(p, ',');
        if (end == NULL)
            end = p + strlen(p);
        const char *b = p, *e = end;
        while (b < e && isspace((unsigned char)*b))
            b++;
        while (e > b && isspace((unsigned char)e[-1]))
            e--;
        if (b == e) {
            dfs_addr_list_free(v);
            return dfs_seterr(errmsg, DFS_EINVAL,
                              cap == 1
                                  ? "empty address"
                                  : "empty address in the list '%s' (HOST:PORT[,HOST:PORT...])",
                              s);
        }
        v[k] = strndup(b, (size_t)(e - b));
        if (v[k] == NULL) {
            dfs_addr_list_free(v);
            return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
        }
        k++;
        if (*end == '\0')
            break;
        p = end + 1;
    }
    *items = v;
    *n = k;
    return DFS_OK;
}

void dfs_addr_list_free(char **items)
{
    if (items == NULL)
        return;
    for (char **q = items; *q != NULL; q++)
        free(*q);
    free(items);
}
