/* Random identifiers (nodes, files) and the fragment ids derived from them. */
#ifndef DFS_COMMON_ID_H
#define DFS_COMMON_ID_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Node and file ids: 128 random bits as 32 lower-case hex digits. */
#define DFS_ID_HEX          32
/* Fragment ids: the file id followed by the fragment index as 8 hex digits. */
#define DFS_FRAGMENT_ID_HEX 40

/* Fill out[DFS_ID_HEX + 1] with a fresh random id (getrandom(2)). Returns 0 or DFS_EIO. */
int dfs_id_random(char out[DFS_ID_HEX + 1]);

/* Whether s is exactly `len` lower-case hex digits. */
bool dfs_id_is_hex(const char *s, size_t len);

/* Whether s is a well-formed node or file id. */
bool dfs_id_valid(const char *s);

/* Whether s is a well-formed fragment id (this is what keeps storage paths inside the data dir). */
bool dfs_fragment_id_valid(const char *s);

/* out[DFS_FRAGMENT_ID_HEX + 1] = file_id || %08x index. file_id must be valid. */
void dfs_fragment_id(const char *file_id, uint32_t index, char out[DFS_FRAGMENT_ID_HEX + 1]);

#endif /* DFS_COMMON_ID_H */
