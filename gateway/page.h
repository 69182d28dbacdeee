/* The status page: one self-contained HTML document (inline CSS and JS, no network but the
   gateway's own JSON routes), compiled in from gateway/status.html. */
#ifndef DFS_GATEWAY_PAGE_H
#define DFS_GATEWAY_PAGE_H

#include <stddef.h>

extern const char dfs_gw_page_html[];
extern const size_t dfs_gw_page_html_len;

#endif /* DFS_GATEWAY_PAGE_H */
