/* The served FileDescriptorSet, embedded at build time (//protos:descriptor_set_embedded). */
#ifndef DFS_PROTOS_DESCRIPTOR_SET_H
#define DFS_PROTOS_DESCRIPTOR_SET_H

#include <stddef.h>

/*
 * The serialized google.protobuf.FileDescriptorSet of every proto a dfs server serves or can
 * describe: dfs/v1/{types,metadata,storage}.proto, grpc/health/v1/health.proto and
 * grpc/reflection/{v1,v1alpha}/reflection.proto, each with every file it imports, and source info
 * (comments). Read-only, lives as long as the program; server reflection answers from it.
 */
extern const unsigned char dfs_descriptor_set[];
extern const size_t dfs_descriptor_set_size;

#endif /* DFS_PROTOS_DESCRIPTOR_SET_H */
