/* TLS material for gRPC links, the plaintext-only-on-loopback rule, and bearer-token files. */
#include "services/rpc/security_int.h"

#include "common/addr.h"
#include "common/err.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct dfs_rpc_tls {
    char *ca;   /* PEM text; NULL: system roots (clients), none (servers) */
    char *cert; /* PEM text; NULL: none */
    char *key;
    bool mutual;
    char *server_name;
};

/* PEM files are small; anything larger is not a certificate bundle we want to hold. */
#define PEM_MAX (4u << 20)

static int read_pem(const char *what, const char *path, char **out, char **errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dfs_seterr_errno(errmsg, DFS_EINVAL, errno, "cannot read %s %s", what, path);
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (uint64_t)st.st_size > PEM_MAX) {
        close(fd);
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "%s %s is not a non-empty regular file of at most %u MiB", what, path,
                          PEM_MAX >> 20);
    }
    size_t n = (size_t)st.st_size;
    char *buf = malloc(n + 1);
    if (buf == NULL) {
        close(fd);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            close(fd);
            free(buf);
            return dfs_seterr_errno(errmsg, DFS_EINVAL, e, "cannot read %s %s", what, path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    if (strstr(buf, "-----BEGIN ") == NULL) {
        free(buf);
        return dfs_seterr(errmsg, DFS_EINVAL, "%s %s is not in PEM format (no -----BEGIN line)",
                          what, path);
    }
    *out = buf;
    return DFS_OK;
}

int dfs_rpc_tls_create(const struct dfs_rpc_tls_config *cfg, dfs_rpc_tls **out, char **errmsg)
{
    bool has_cert = cfg->cert_file != NULL && cfg->cert_file[0] != '\0';
    bool has_key = cfg->key_file != NULL && cfg->key_file[0] != '\0';
    bool has_ca = cfg->ca_file != NULL && cfg->ca_file[0] != '\0';
    if (has_cert != has_key)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "a TLS certificate needs its key and a key its "
                          "certificate (give --tls-cert and --tls-key)");
    if (cfg->mutual && !has_ca)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "mutual TLS needs the CA that client certificates chain to (--tls-ca)");
    dfs_rpc_tls *t = calloc(1, sizeof *t);
    if (t == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    t->mutual = cfg->mutual;
    int rc = DFS_OK;
    if (has_ca)
        rc = read_pem("TLS CA file", cfg->ca_file, &t->ca, errmsg);
    if (rc == DFS_OK && has_cert)
        rc = read_pem("TLS certificate", cfg->cert_file, &t->cert, errmsg);
    if (rc == DFS_OK && has_key)
        rc = read_pem("TLS key", cfg->key_file, &t->key, errmsg);
    if (rc == DFS_OK && cfg->server_name != NULL && cfg->server_name[0] != '\0' &&
        (t->server_name = strdup(cfg->server_name)) == NULL)
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    if (rc != DFS_OK) {
        dfs_rpc_tls_destroy(t);
        return rc;
    }
    *out = t;
    return DFS_OK;
}

int dfs_rpc_tls_create_optional(const struct dfs_rpc_tls_config *cfg, dfs_rpc_tls **out,
                                char **errmsg)
{
    bool any = (cfg->ca_file != NULL && cfg->ca_file[0] != '\0') ||
               (cfg->cert_file != NULL && cfg->cert_file[0] != '\0') ||
               (cfg->key_file != NULL && cfg->key_file[0] != '\0');
    if (!any) {
        if (cfg->mutual)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "--tls-client-auth needs --tls-cert, --tls-key and --tls-ca");
        *out = NULL;
        return DFS_OK;
    }
    return dfs_rpc_tls_create(cfg, out, errmsg);
}

void dfs_rpc_tls_destroy(dfs_rpc_tls *tls)
{
    if (tls == NULL)
        return;
    free(tls->ca);
    free(tls->cert);
    if (tls->key != NULL)
        explicit_bzero(tls->key, strlen(tls->key));
    free(tls->key);
    free(tls->server_name);
    free(tls);
}

bool dfs_rpc_tls_has_cert(const dfs_rpc_tls *tls)
{
    return tls != NULL && tls->cert != NULL && tls->key != NULL;
}

grpc_channel_credentials *dfs_rpc_tls_channel_creds(const dfs_rpc_tls *tls)
{
    grpc_ssl_pem_key_cert_pair pair = {.private_key = tls->key, .cert_chain = tls->cert};
    return grpc_ssl_credentials_create(tls->ca, tls->cert != NULL ? &pair : NULL, NULL, NULL);
}

grpc_server_credentials *dfs_rpc_tls_server_creds(const dfs_rpc_tls *tls)
{
    grpc_ssl_pem_key_cert_pair pair = {.private_key = tls->key, .cert_chain = tls->cert};
    grpc_ssl_client_certificate_request_type req =
        tls->mutual ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                    : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE;
    return grpc_ssl_server_credentials_create_ex(tls->mutual ? tls->ca : NULL, &pair, 1, req, NULL);
}

const char *dfs_rpc_tls_server_name(const dfs_rpc_tls *tls)
{
    return tls->server_name;
}

/* ---- the plaintext rule ---- */

bool dfs_rpc_addr_is_loopback(const char *addr)
{
    if (addr == NULL)
        return false;
    if (strncmp(addr, "unix:", 5) == 0 || strncmp(addr, "unix-abstract:", 14) == 0)
        return true;
    /* gRPC URI schemes for IP addresses; dns: names are resolved later, so judge the name. */
    const char *schemes[] = {"ipv4:", "ipv6:", "dns:///", "dns:"};
    for (size_t i = 0; i < sizeof schemes / sizeof schemes[0]; i++) {
        size_t n = strlen(schemes[i]);
        if (strncmp(addr, schemes[i], n) == 0) {
            addr += n;
            break;
        }
    }
    char host[256];
    if (dfs_addr_host(addr, host, sizeof host) != DFS_OK)
        return false;
    if (strcasecmp(host, "localhost") == 0)
        return true;
    struct in_addr v4;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return (ntohl(v4.s_addr) >> 24) == 127;
    struct in6_addr v6;
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return IN6_IS_ADDR_LOOPBACK(&v6) || (IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127);
    return false;
}

int dfs_rpc_plaintext_check(const struct dfs_rpc_link_security *sec, const char *addr,
                            const char *role, char **errmsg)
{
    if (sec != NULL && (sec->tls != NULL || sec->insecure))
        return DFS_OK;
    if (dfs_rpc_addr_is_loopback(addr))
        return DFS_OK;
    bool server = strcmp(role, "listen on") == 0;
    return dfs_seterr(errmsg, DFS_EPERM,
                      "refusing to %s %s without TLS: plaintext is only for loopback; give %s, or "
                      "--insecure to allow plaintext",
                      role, addr, server ? "--tls-cert and --tls-key" : "--tls-ca");
}

/* ---- tokens ---- */

bool dfs_rpc_token_valid(const char *s)
{
    if (s == NULL)
        return false;
    size_t n = 0;
    for (; s[n] != '\0'; n++) {
        unsigned char c = (unsigned char)s[n];
        if (c <= ' ' || c >= 0x7f || n >= DFS_RPC_TOKEN_MAX)
            return false;
    }
    return n > 0;
}

int dfs_rpc_token_read_file(const char *path, char **out, char **errmsg)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return dfs_seterr_errno(errmsg, DFS_EUNAUTH, errno, "cannot read token file %s", path);
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return dfs_seterr_errno(errmsg, DFS_EUNAUTH, e, "cannot read token file %s", path);
    }
    /* Group access is allowed: a Kubernetes Secret volume shares its files with the pod's
       fsGroup (defaultMode 0440). */
    if (S_ISREG(st.st_mode) && (st.st_mode & 007) != 0) {
        close(fd);
        return dfs_seterr(errmsg, DFS_EPERM,
                          "token file %s is open to every user (mode %03o): chmod 600 %s", path,
                          (unsigned)(st.st_mode & 0777), path);
    }
    char buf[DFS_RPC_TOKEN_MAX + 64];
    size_t got = 0;
    for (;;) {
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return dfs_seterr_errno(errmsg, DFS_EUNAUTH, e, "cannot read token file %s", path);
        }
        if (r == 0 || (got += (size_t)r) == sizeof buf - 1)
            break;
    }
    close(fd);
    buf[got] = '\0';
    char *nl = strchr(buf, '\n');
    if (nl != NULL)
        *nl = '\0';
    char *s = buf;
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    if (!dfs_rpc_token_valid(s)) {
        explicit_bzero(buf, sizeof buf);
        return dfs_seterr(errmsg, DFS_EUNAUTH,
                          "token file %s does not hold a token on its first line", path);
    }
    *out = strdup(s);
    explicit_bzero(buf, sizeof buf);
    if (*out == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    return DFS_OK;
}
