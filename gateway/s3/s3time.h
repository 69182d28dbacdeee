/* The time formats S3 speaks: HTTP dates, ISO 8601 basic (x-amz-date) and extended (XML). */
#ifndef DFS_GATEWAY_S3_S3TIME_H
#define DFS_GATEWAY_S3_S3TIME_H

#include <stdint.h>

/* Times are seconds since the Unix epoch (UTC) unless a name says _ms. */

#define DFS_S3TIME_HTTP_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */
#define DFS_S3TIME_AMZ_LEN  16 /* "19941106T084937Z" */
#define DFS_S3TIME_ISO_LEN  24 /* "1994-11-06T08:49:37.000Z" */

/*
 * An HTTP date (RFC 9110 section 5.6.7) in any of the three forms a recipient must accept:
 * IMF-fixdate "Sun, 06 Nov 1994 08:49:37 GMT", RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" (a
 * two-digit year more than 50 years ahead is taken as the past century) and asctime
 * "Sun Nov  6 08:49:37 1994". The weekday is read but not checked against the date. Returns 0
 * and *t, or DFS_EINVAL (nothing else accepted: no other zone, no trailing text).
 */
int dfs_s3time_parse_http(const char *s, int64_t now, int64_t *t);

/* IMF-fixdate of t into out[DFS_S3TIME_HTTP_LEN + 1]. Years 0..9999. */
void dfs_s3time_format_http(int64_t t, char out[DFS_S3TIME_HTTP_LEN + 1]);

/* ISO 8601 basic "YYYYMMDDTHHMMSSZ" as SigV4 uses it. Returns 0 and *t, or DFS_EINVAL. */
int dfs_s3time_parse_amz(const char *s, int64_t *t);

/* The same form into out[DFS_S3TIME_AMZ_LEN + 1]. */
void dfs_s3time_format_amz(int64_t t, char out[DFS_S3TIME_AMZ_LEN + 1]);

/* ISO 8601 extended with milliseconds, "YYYY-MM-DDTHH:MM:SS.mmmZ", as S3 writes LastModified. */
void dfs_s3time_format_iso_ms(int64_t t_ms, char out[DFS_S3TIME_ISO_LEN + 1]);

#endif /* DFS_GATEWAY_S3_S3TIME_H */
