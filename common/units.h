/* Sizes and rates as people type and read them. */
#ifndef DFS_COMMON_UNITS_H
#define DFS_COMMON_UNITS_H

#include <stddef.h>
#include <stdint.h>

/*
 * Parse a byte count: a decimal number (fractions allowed: "1.5G") with an optional suffix.
 *   K M G T       powers of 1024 (also KiB MiB GiB TiB, k, and B for bytes)
 *   KB MB GB TB   powers of 1000
 * "0", "4096", "100K", "1.5GiB", "10MB". Whitespace, negative numbers, unknown suffixes and values
 * above 2^63 are DFS_EINVAL with a reason in *errmsg.
 */
int dfs_parse_size(const char *s, uint64_t *out, char **errmsg);

/*
 * Parse a rate in bytes per second: like dfs_parse_size ("500K", "100M", "1G" are bytes/s, binary
 * multiples; an optional "/s" is accepted), or bits per second with a "bit" suffix and decimal
 * multiples as networks count them: "100Mbit" = 12,500,000 bytes/s, "1Gbit", "64kbit", "10bit".
 * A rate of 0 is DFS_EINVAL (use no limit instead).
 */
int dfs_parse_rate(const char *s, uint64_t *bytes_per_sec, char **errmsg);

/*
 * Parse an erasure code as people type it: "K+M", K data and M parity fragments, each a plain
 * decimal number (no sign, no spaces) with K >= 1, M >= 1 and K + M <= max_width. Returns 0 with
 * *k and *m set, or DFS_EINVAL (nothing set); callers word the message for their own flag.
 */
int dfs_parse_ec(const char *s, uint32_t max_width, uint32_t *k, uint32_t *m);

/* Format a byte count for people: "0 B", "999 B", "1.5 KiB", "10.0 MiB", "2.00 GiB". */
void dfs_format_size(uint64_t bytes, char *buf, size_t cap);

/* Format a rate: "12.5 MiB/s". */
void dfs_format_rate(double bytes_per_sec, char *buf, size_t cap);

/* Format a duration in seconds: "0.25 s", "12 s", "3m05s", "2h01m". */
void dfs_format_duration(double seconds, char *buf, size_t cap);

#endif /* DFS_COMMON_UNITS_H */
