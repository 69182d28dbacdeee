/* Placement policies (random, min_copy, buddy, least_used), zones, and the copyset/group state. */
#include "metadata/placement.h"

#include "common/err.h"

#include <assert.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#define NONE UINT32_MAX

static const char *const policy_names[] = {
    [DFS_POLICY_UNSPECIFIED] = "unspecified", [DFS_POLICY_RANDOM] = "random",
    [DFS_POLICY_MIN_COPY] = "min_copy",       [DFS_POLICY_BUDDY] = "buddy",
    [DFS_POLICY_LEAST_USED] = "least_used",
};

const char *dfs_placement_policy_name(enum dfs_policy policy)
{
    if ((unsigned)policy >= sizeof policy_names / sizeof policy_names[0])
        return "unknown";
    return policy_names[policy];
}

int dfs_placement_policy_parse(const char *s, enum dfs_policy *out, char **errmsg)
{
    if (s != NULL) {
        for (int p = DFS_POLICY_RANDOM; p <= DFS_POLICY_LEAST_USED; p++) {
            const char *name = policy_names[p];
            size_t i = 0;
            while (name[i] != '\0' && (s[i] == name[i] || (s[i] == '-' && name[i] == '_')))
                i++;
            if (name[i] == '\0' && s[i] == '\0') {
                *out = (enum dfs_policy)p;
                return DFS_OK;
            }
        }
    }
    return dfs_seterr(errmsg, DFS_EINVAL,
                      "unknown placement policy '%s' (random, min_copy, buddy, least_used)",
                      s == NULL ? "" : s);
}

bool dfs_placement_policy_has_sets(enum dfs_policy policy)
{
    return policy == DFS_POLICY_MIN_COPY || policy == DFS_POLICY_BUDDY;
}

/* ---- Data structures ------------------------------------------------------------------------- */

/*
 * A family's state. Members are numbered 0..nmem-1 in the order they joined (compacted when some
 * leave); ids[i] and mem[i] describe member i, idmap finds a member by id. Zones are interned per
 * family (zones[], zonemap) and never forgotten. A set lists member numbers: exactly `width` of
 * them for a copyset, any positive number for a buddy group; a member is in at most one group.
 *
 * The index fields below `synced` are derived from the rest by derive(), at the end of every sync
 * that changed anything, and only read by choose.
 */

/* Sync scratch state of a member. */
enum {
    M_ABSENT = 0, /* not in the array: it leaves */
    M_PRESENT,    /* in the array, not gone */
    M_GONE,       /* in the array, gone: it leaves */
    M_FRESH,      /* joined in this sync */
};

struct member {
    uint32_t zone; /* index into zones[] */
    uint32_t ext;  /* its index in the array of the last sync */
    uint8_t st;    /* M_*, meaningful during a sync only */
    bool writable;
};

struct pset {
    uint32_t perm;
    uint32_t n, cap;
    uint32_t *m;
};

/* Open addressing from a string to its index in an array of strings; slots hold index + 1. */
struct strmap {
    uint32_t *slot;
    uint32_t cap; /* a power of two, or 0 */
};

struct family {
    enum dfs_policy policy;
    uint32_t width;
    uint32_t param;  /* S or G in effect */
    uint32_t nperms; /* min_copy: P; buddy: 1 */

    char **ids;
    struct member *mem;
    uint32_t nmem, capmem;
    struct strmap idmap;

    char **zones;
    uint32_t nzones, capzones;
    struct strmap zonemap;

    struct pset *sets;
    uint32_t nsets, capsets;

    /* Derived indexes. */
    bool synced;     /* the indexes match the array of the last sync */
    size_t synced_n; /* that array's length */
    bool zoned;      /* the writable members span >= width zones */
    uint32_t nwritable;
    uint32_t *ns_off;    /* nmem + 1 offsets into ns */
    uint32_t *ns;        /* the sets holding member i: ns[ns_off[i] .. ns_off[i + 1]) */
    uint8_t *set_ok;     /* min_copy: every member of the set is writable */
    uint32_t *byext;     /* the member at each index of the synced array, or NONE */
    uint32_t *primaries; /* min_copy: members in at least one set_ok set, in array order */
    uint32_t nprimaries;
    uint32_t *gw_off; /* buddy: nsets + 1 offsets into gw */
    uint32_t *gw;     /* buddy: the writable members of group g */
    uint32_t *elig;   /* buddy: groups with >= width writable members */
    uint64_t *cum;    /* buddy: cum[i] = writable members of elig[0..i] */
    uint32_t nelig;
};

struct dfs_placement {
    struct dfs_placement_config cfg;
    struct family **fam;
    size_t nfam;
};

/* ---- Small helpers --------------------------------------------------------------------------- */

/* Make room for `need` elements of `size` bytes in the array at *arrp (any T **) of capacity *cap. */
static int reserve(void *arrp, uint32_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return DFS_OK;
    size_t ncap = *cap < 8 ? 8 : (size_t)*cap * 2;
    while (ncap < need)
        ncap *= 2;
    if (ncap > NONE - 1)
        ncap = NONE - 1;
    if (ncap < need)
        return DFS_ENOMEM;
    void *arr;
    memcpy(&arr, arrp, sizeof arr);
    void *p = realloc(arr, ncap * size);
    if (p == NULL)
        return DFS_ENOMEM;
    memcpy(arrp, &p, sizeof p);
    *cap = (uint32_t)ncap;
    return DFS_OK;
}

static void shuffle_size(dfs_rng *rng, size_t *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)dfs_rng_below(rng, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

static const char *zone_str(const char *zone)
{
    return zone == NULL ? "" : zone;
}

static bool same_zone(const char *a, const char *b)
{
    return strcmp(zone_str(a), zone_str(b)) == 0;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 0x100000001b3ull;
    }
    return h ^ (h >> 29);
}

static uint32_t strmap_find(const struct strmap *map, char *const *keys, const char *s)
{
    if (map->cap == 0)
        return NONE;
    uint32_t mask = map->cap - 1;
    for (uint32_t i = (uint32_t)str_hash(s) & mask;; i = (i + 1) & mask) {
        uint32_t v = map->slot[i];
        if (v == 0)
            return NONE;
        if (strcmp(keys[v - 1], s) == 0)
            return v - 1;
    }
}

static void strmap_put(struct strmap *map, char *const *keys, uint32_t idx)
{
    uint32_t mask = map->cap - 1;
    uint32_t i = (uint32_t)str_hash(keys[idx]) & mask;
    while (map->slot[i] != 0)
        i = (i + 1) & mask;
    map->slot[i] = idx + 1;
}

/* Index keys[0..n) afresh, at most half full. */
static int strmap_rebuild(struct strmap *map, char *const *keys, uint32_t n)
{
    uint32_t cap = 16;
    while (cap / 2 < n + 1)
        cap *= 2;
    uint32_t *slot = calloc(cap, sizeof *slot);
    if (slot == NULL)
        return DFS_ENOMEM;
    free(map->slot);
    map->slot = slot;
    map->cap = cap;
    for (uint32_t i = 0; i < n; i++)
        strmap_put(map, keys, i);
    return DFS_OK;
}

/* keys[n - 1] was just appended: index it. */
static int strmap_add(struct strmap *map, char *const *keys, uint32_t n)
{
    if (map->cap / 2 < n + 1)
        return strmap_rebuild(map, keys, n);
    strmap_put(map, keys, n - 1);
    return DFS_OK;
}

/* ---- Families -------------------------------------------------------------------------------- */

static void free_indexes(struct family *f)
{
    free(f->ns_off);
    free(f->ns);
    free(f->set_ok);
    free(f->primaries);
    free(f->byext);
    free(f->gw_off);
    free(f->gw);
    free(f->elig);
    free(f->cum);
    f->ns_off = f->ns = f->primaries = f->byext = f->gw_off = f->gw = f->elig = NULL;
    f->set_ok = NULL;
    f->cum = NULL;
    f->nprimaries = f->nelig = f->nwritable = 0;
    f->synced = false;
}

static void free_sets(struct family *f)
{
    for (uint32_t i = 0; i < f->nsets; i++)
        free(f->sets[i].m);
    f->nsets = 0;
}

static void family_free(struct family *f)
{
    if (f == NULL)
        return;
    free_indexes(f);
    free_sets(f);
    free(f->sets);
    for (uint32_t i = 0; i < f->nmem; i++)
        free(f->ids[i]);
    free(f->ids);
    free(f->mem);
    free(f->idmap.slot);
    for (uint32_t i = 0; i < f->nzones; i++)
        free(f->zones[i]);
    free(f->zones);
    free(f->zonemap.slot);
    free(f);
}

/* S and P for min_copy, G for buddy, as the configuration asks for this width. */
static uint32_t want_param(const dfs_placement *pl, enum dfs_policy policy, uint32_t w)
{
    if (policy == DFS_POLICY_MIN_COPY)
        return pl->cfg.scatter_width != 0 ? pl->cfg.scatter_width : w - 1;
    uint32_t g = pl->cfg.group_size != 0 ? pl->cfg.group_size : 2 * w;
    return g < w ? w : g;
}

static uint32_t perms_for(uint32_t s, uint32_t w)
{
    if (w <= 1)
        return 1;
    uint32_t p = (s + w - 2) / (w - 1);
    return p == 0 ? 1 : p;
}

static size_t family_index(const dfs_placement *pl, enum dfs_policy policy, size_t width)
{
    for (size_t i = 0; i < pl->nfam; i++) {
        if (pl->fam[i]->policy == policy && pl->fam[i]->width == width)
            return i;
    }
    return SIZE_MAX;
}

static struct family *family_find(const dfs_placement *pl, enum dfs_policy policy, size_t width)
{
    size_t i = family_index(pl, policy, width);
    return i == SIZE_MAX ? NULL : pl->fam[i];
}

/* Replace (or add) the family with f's policy and width; the old one is freed. */
static int family_put(dfs_placement *pl, struct family *f)
{
    size_t i = family_index(pl, f->policy, f->width);
    if (i != SIZE_MAX) {
        family_free(pl->fam[i]);
        pl->fam[i] = f;
        return DFS_OK;
    }
    struct family **v = realloc(pl->fam, (pl->nfam + 1) * sizeof *v);
    if (v == NULL)
        return DFS_ENOMEM;
    pl->fam = v;
    pl->fam[pl->nfam++] = f;
    return DFS_OK;
}

static void family_drop(dfs_placement *pl, enum dfs_policy policy, size_t width)
{
    size_t i = family_index(pl, policy, width);
    if (i == SIZE_MAX)
        return;
    family_free(pl->fam[i]);
    pl->fam[i] = pl->fam[--pl->nfam];
}

static struct family *family_new(enum dfs_policy policy, uint32_t width, uint32_t param,
                                 uint32_t nperms)
{
    struct family *f = calloc(1, sizeof *f);
    if (f == NULL)
        return NULL;
    f->policy = policy;
    f->width = width;
    f->param = param;
    f->nperms = nperms;
    return f;
}

static int zone_intern(struct family *f, const char *zone, uint32_t *out)
{
    zone = zone_str(zone);
    uint32_t z = strmap_find(&f->zonemap, f->zones, zone);
    if (z == NONE) {
        if (reserve(&f->zones, &f->capzones, (size_t)f->nzones + 1, sizeof *f->zones) != DFS_OK)
            return DFS_ENOMEM;
        char *copy = strdup(zone);
        if (copy == NULL)
            return DFS_ENOMEM;
        f->zones[f->nzones++] = copy;
        if (strmap_add(&f->zonemap, f->zones, f->nzones) != DFS_OK) {
            free(f->zones[--f->nzones]);
            return DFS_ENOMEM;
        }
        z = f->nzones - 1;
    }
    *out = z;
    return DFS_OK;
}

static int member_add(struct family *f, const char *id, uint32_t zone, uint32_t *out)
{
    if (f->nmem + 1 > f->capmem) {
        uint32_t cap = f->capmem;
        if (reserve(&f->ids, &cap, (size_t)f->nmem + 1, sizeof *f->ids) != DFS_OK)
            return DFS_ENOMEM;
        struct member *m = realloc(f->mem, cap * sizeof *m);
        if (m == NULL)
            return DFS_ENOMEM; /* ids[] grew, mem[] did not: capmem still tells the truth */
        f->mem = m;
        f->capmem = cap;
    }
    char *copy = strdup(id);
    if (copy == NULL)
        return DFS_ENOMEM;
    uint32_t i = f->nmem;
    f->ids[i] = copy;
    f->mem[i] = (struct member){.zone = zone, .ext = NONE, .st = M_FRESH, .writable = false};
    f->nmem++;
    if (strmap_add(&f->idmap, f->ids, f->nmem) != DFS_OK) {
        free(f->ids[--f->nmem]);
        return DFS_ENOMEM;
    }
    *out = i;
    return DFS_OK;
}

static int set_push(struct pset *s, uint32_t m)
{
    if (reserve(&s->m, &s->cap, (size_t)s->n + 1, sizeof *s->m) != DFS_OK)
        return DFS_ENOMEM;
    s->m[s->n++] = m;
    return DFS_OK;
}

/* Append an empty set of permutation `perm`; *out is its index. */
static int set_new(struct family *f, uint32_t perm, uint32_t *out)
{
    if (reserve(&f->sets, &f->capsets, (size_t)f->nsets + 1, sizeof *f->sets) != DFS_OK)
        return DFS_ENOMEM;
    f->sets[f->nsets] = (struct pset){.perm = perm};
    *out = f->nsets++;
    return DFS_OK;
}

static void set_delete(struct family *f, uint32_t s)
{
    free(f->sets[s].m);
    memmove(&f->sets[s], &f->sets[s + 1], (f->nsets - s - 1) * sizeof *f->sets);
    f->nsets--;
}

static bool leaving(const struct member *m)
{
    return m->st == M_ABSENT || m->st == M_GONE;
}

/* Number of distinct zones among the members that stay (writable_only: the writable ones). */
static int zones_spanned(const struct family *f, bool writable_only, uint32_t *out)
{
    uint8_t *seen = calloc((size_t)f->nzones + 1, 1);
    if (seen == NULL)
        return DFS_ENOMEM;
    uint32_t n = 0;
    for (uint32_t i = 0; i < f->nmem; i++) {
        const struct member *m = &f->mem[i];
        if (leaving(m) || (writable_only && !m->writable) || seen[m->zone])
            continue;
        seen[m->zone] = 1;
        n++;
    }
    free(seen);
    *out = n;
    return DFS_OK;
}

/* ---- Zone-interleaved permutations ----------------------------------------------------------- */

/* A zone in the max-heap of zone_sequence: most nodes left first, ties in random order. */
struct zslot {
    uint32_t zone, left;
    uint64_t tie;
};

static bool zslot_before(const struct zslot *a, const struct zslot *b)
{
    return a->left != b->left ? a->left > b->left : a->tie > b->tie;
}

static void heap_push(struct zslot *h, uint32_t *n, struct zslot x)
{
    uint32_t i = (*n)++;
    while (i > 0 && zslot_before(&x, &h[(i - 1) / 2])) {
        h[i] = h[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h[i] = x;
}

static struct zslot heap_pop(struct zslot *h, uint32_t *n)
{
    struct zslot top = h[0], x = h[--(*n)];
    uint32_t i = 0;
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= *n)
            break;
        if (c + 1 < *n && zslot_before(&h[c + 1], &h[c]))
            c++;
        if (!zslot_before(&h[c], &x))
            break;
        h[i] = h[c];
        i = c;
    }
    if (*n > 0)
        h[i] = x;
    return top;
}

/*
 * Put the members v[0..n) in a random order to be cut into consecutive blocks of `block`. In zone
 * mode each block is filled one node per zone, from the zones with the most nodes left (ties in
 * random order), repeating zones only once every zone with nodes left is in the block: so every
 * block spans min(block, zones) zones while the zone sizes allow, and the spread is maximised
 * greedily when one zone is too large. Nodes are taken from each zone in random order.
 */
static int zone_sequence(const struct family *f, uint32_t *v, size_t n, size_t block, bool zoned,
                         dfs_rng *rng)
{
    dfs_rng_shuffle_u32(rng, v, n);
    if (!zoned || n < 2)
        return DFS_OK;
    uint32_t nz = f->nzones;
    uint32_t *start = calloc((size_t)nz + 1, sizeof *start);
    uint32_t *taken = calloc((size_t)nz + 1, sizeof *taken);
    uint32_t *byzone = malloc(n * sizeof *byzone);
    struct zslot *heap = malloc(((size_t)nz + 1) * sizeof *heap);
    struct zslot *round = malloc(((size_t)nz + 1) * sizeof *round);
    int rc = start == NULL || taken == NULL || byzone == NULL || heap == NULL || round == NULL
                 ? DFS_ENOMEM
                 : DFS_OK;
    if (rc == DFS_OK) {
        /* Counting sort by zone, keeping the shuffled order inside each zone. */
        for (size_t i = 0; i < n; i++)
            start[f->mem[v[i]].zone + 1]++;
        for (uint32_t z = 0; z < nz; z++)
            start[z + 1] += start[z];
        for (size_t i = 0; i < n; i++) {
            uint32_t z = f->mem[v[i]].zone;
            byzone[start[z] + taken[z]++] = v[i];
        }
        uint32_t nh = 0;
        for (uint32_t z = 0; z < nz; z++) {
            taken[z] = 0;
            if (start[z + 1] > start[z])
                heap_push(heap, &nh, (struct zslot){z, start[z + 1] - start[z], dfs_rng_next(rng)});
        }
        size_t pos = 0;
        while (pos < n) {
            size_t r = block - pos % block;
            if (r > nh)
                r = nh;
            for (size_t i = 0; i < r; i++)
                round[i] = heap_pop(heap, &nh);
            for (size_t i = 0; i < r; i++) {
                uint32_t z = round[i].zone;
                v[pos++] = byzone[start[z] + taken[z]++];
                if (--round[i].left > 0) {
                    round[i].tie = dfs_rng_next(rng);
                    heap_push(heap, &nh, round[i]);
                }
            }
        }
    }
    free(start);
    free(taken);
    free(byzone);
    free(heap);
    free(round);
    return rc;
}

/* ---- min_copy: building, extending, repairing copysets ---------------------------------------- */

/*
 * Complete set s to `width` nodes with random members that are not in it and may be used
 * (usable(m)), preferring (in zone mode) zones the set lacks. mark[nmem] and zmark[nzones] are
 * zeroed scratch, zeroed again on return. Returns DFS_EPRECOND when too few members qualify.
 */
static int fill_set(struct family *f, struct pset *s, bool zoned, bool fresh_ok, dfs_rng *rng,
                    uint8_t *mark, uint8_t *zmark)
{
    int rc = DFS_OK;
    for (uint32_t j = 0; j < s->n; j++) {
        mark[s->m[j]] = 1;
        zmark[f->mem[s->m[j]].zone] = 1;
    }
    while (rc == DFS_OK && s->n < f->width) {
        /* Tier 0: a zone the set lacks (zone mode); tier 1: any. Uniform within the best tier. */
        uint32_t cnt[2] = {0, 0};
        for (uint32_t i = 0; i < f->nmem; i++) {
            const struct member *m = &f->mem[i];
            if (mark[i] || leaving(m) || (!fresh_ok && m->st == M_FRESH))
                continue;
            cnt[zoned && !zmark[m->zone] ? 0 : 1]++;
        }
        int tier = cnt[0] > 0 ? 0 : 1;
        if (cnt[tier] == 0) {
            rc = DFS_EPRECOND;
            break;
        }
        uint32_t r = (uint32_t)dfs_rng_below(rng, cnt[tier]), pick = NONE;
        for (uint32_t i = 0; i < f->nmem && pick == NONE; i++) {
            const struct member *m = &f->mem[i];
            if (mark[i] || leaving(m) || (!fresh_ok && m->st == M_FRESH))
                continue;
            if ((zoned && !zmark[m->zone] ? 0 : 1) == tier && r-- == 0)
                pick = i;
        }
        rc = set_push(s, pick);
        if (rc == DFS_OK) {
            mark[pick] = 1;
            zmark[f->mem[pick].zone] = 1;
        }
    }
    for (uint32_t j = 0; j < s->n; j++) {
        mark[s->m[j]] = 0;
        zmark[f->mem[s->m[j]].zone] = 0;
    }
    return rc;
}

/*
 * In every permutation, cut the members that no copyset of that permutation holds yet (all of them
 * in a new permutation, the new members otherwise) into copysets among themselves; the leftover
 * block is completed with other members. Needs at least `width` members.
 */
static int mc_extend(struct family *f, bool zoned, dfs_rng *rng, bool *changed)
{
    uint32_t w = f->width;
    if (f->nmem < w)
        return DFS_OK;
    uint8_t *mark = calloc(f->nmem, 1);
    uint8_t *zmark = calloc((size_t)f->nzones + 1, 1);
    uint32_t *u = malloc((size_t)f->nmem * sizeof *u);
    int rc = mark == NULL || zmark == NULL || u == NULL ? DFS_ENOMEM : DFS_OK;
    for (uint32_t p = 0; rc == DFS_OK && p < f->nperms; p++) {
        for (uint32_t s = 0; s < f->nsets; s++) {
            if (f->sets[s].perm == p)
                for (uint32_t j = 0; j < f->sets[s].n; j++)
                    mark[f->sets[s].m[j]] = 1;
        }
        size_t nu = 0;
        for (uint32_t i = 0; i < f->nmem; i++) {
            if (!mark[i])
                u[nu++] = i;
            mark[i] = 0;
        }
        if (nu == 0)
            continue;
        rc = zone_sequence(f, u, nu, w, zoned, rng);
        for (size_t b = 0; rc == DFS_OK && b * w < nu; b++) {
            uint32_t s;
            rc = set_new(f, p, &s);
            for (size_t j = b * w; rc == DFS_OK && j < nu && j < (b + 1) * w; j++)
                rc = set_push(&f->sets[s], u[j]);
            if (rc == DFS_OK && f->sets[s].n < w)
                rc = fill_set(f, &f->sets[s], zoned, true, rng, mark, zmark);
        }
        *changed = true;
    }
    free(mark);
    free(zmark);
    free(u);
    return rc;
}

/*
 * Replace every leaving member of every copyset by a random staying member that is not in the set:
 * writable and of a zone the set lacks first, then writable, then any (zone-lacking first). Members
 * that joined in this sync are not used (they form copysets of their own). With fewer than `width`
 * old members staying, the copysets are dropped instead.
 */
static int mc_repair(struct family *f, bool zoned, dfs_rng *rng, bool *changed)
{
    uint32_t stay = 0;
    for (uint32_t i = 0; i < f->nmem; i++)
        stay += f->mem[i].st == M_PRESENT;
    if (stay < f->width) {
        if (f->nsets > 0)
            *changed = true;
        free_sets(f);
        return DFS_OK;
    }
    uint8_t *mark = calloc(f->nmem, 1);
    uint8_t *zmark = calloc((size_t)f->nzones + 1, 1);
    int rc = mark == NULL || zmark == NULL ? DFS_ENOMEM : DFS_OK;
    for (uint32_t s = 0; rc == DFS_OK && s < f->nsets; s++) {
        struct pset *set = &f->sets[s];
        bool hit = false;
        for (uint32_t j = 0; j < set->n; j++) {
            const struct member *m = &f->mem[set->m[j]];
            hit |= leaving(m);
            if (!leaving(m)) {
                mark[set->m[j]] = 1;
                zmark[m->zone] = 1;
            }
        }
        for (uint32_t j = 0; hit && j < set->n; j++) {
            if (!leaving(&f->mem[set->m[j]]))
                continue;
            /* Tiers: 0 writable + lacking zone, 1 writable, 2 lacking zone, 3 any. */
            uint32_t cnt[4] = {0, 0, 0, 0};
            for (uint32_t i = 0; i < f->nmem; i++) {
                const struct member *m = &f->mem[i];
                if (mark[i] || m->st != M_PRESENT)
                    continue;
                bool lack = zoned && !zmark[m->zone];
                cnt[m->writable ? (lack ? 0 : 1) : (lack ? 2 : 3)]++;
            }
            int tier = 0;
            while (tier < 3 && cnt[tier] == 0)
                tier++;
            assert(cnt[tier] > 0); /* stay >= width: someone is left outside the set */
            uint32_t r = (uint32_t)dfs_rng_below(rng, cnt[tier]), pick = NONE;
            for (uint32_t i = 0; i < f->nmem && pick == NONE; i++) {
                const struct member *m = &f->mem[i];
                if (mark[i] || m->st != M_PRESENT)
                    continue;
                bool lack = zoned && !zmark[m->zone];
                if ((m->writable ? (lack ? 0 : 1) : (lack ? 2 : 3)) == tier && r-- == 0)
                    pick = i;
            }
            set->m[j] = pick;
            mark[pick] = 1;
            zmark[f->mem[pick].zone] = 1;
        }
        for (uint32_t j = 0; j < set->n; j++) {
            mark[set->m[j]] = 0;
            zmark[f->mem[set->m[j]].zone] = 0;
        }
        if (hit)
            *changed = true;
    }
    free(mark);
    free(zmark);
    return rc;
}

/* ---- buddy: building, joining, splitting, leaving, merging ------------------------------------ */

/* Split group g in two when it has reached 2G: G nodes stay, the rest form a new group. */
static int bd_split(struct family *f, uint32_t g, bool zoned, dfs_rng *rng)
{
    uint32_t G = f->param;
    if (f->sets[g].n < 2 * G)
        return DFS_OK;
    int rc = zone_sequence(f, f->sets[g].m, f->sets[g].n, G, zoned, rng);
    uint32_t ng;
    if (rc == DFS_OK)
        rc = set_new(f, 0, &ng);
    for (uint32_t j = G; rc == DFS_OK && j < f->sets[g].n; j++)
        rc = set_push(&f->sets[ng], f->sets[g].m[j]);
    if (rc == DFS_OK)
        f->sets[g].n = G;
    return rc;
}

/* The smallest group other than `skip` (preferring one without zone z in zone mode), ties random. */
static uint32_t bd_smallest(const struct family *f, uint32_t skip, uint32_t z, bool zoned,
                            dfs_rng *rng)
{
    uint32_t best = NONE, ties = 0;
    bool best_lacks = false;
    for (uint32_t g = 0; g < f->nsets; g++) {
        if (g == skip)
            continue;
        bool lacks = false;
        if (zoned && z != NONE) {
            lacks = true;
            for (uint32_t j = 0; j < f->sets[g].n && lacks; j++)
                lacks = f->mem[f->sets[g].m[j]].zone != z;
        }
        bool better = best == NONE || f->sets[g].n < f->sets[best].n ||
                      (f->sets[g].n == f->sets[best].n && lacks && !best_lacks);
        bool tie = !better && f->sets[g].n == f->sets[best].n && lacks == best_lacks;
        if (better) {
            best = g;
            best_lacks = lacks;
            ties = 1;
        } else if (tie && dfs_rng_below(rng, ++ties) == 0) {
            best = g;
        }
    }
    return best;
}

/* First build: a permutation cut into groups of G; leftovers round-robin; N < G: one group. */
static int bd_build(struct family *f, bool zoned, dfs_rng *rng, bool *changed)
{
    uint32_t n = f->nmem, G = f->param;
    if (n == 0)
        return DFS_OK;
    uint32_t *v = malloc((size_t)n * sizeof *v);
    if (v == NULL)
        return DFS_ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        v[i] = i;
    int rc = zone_sequence(f, v, n, G, zoned, rng);
    uint32_t ngroups = n / G > 0 ? n / G : 1, first = f->nsets;
    for (uint32_t g = 0; rc == DFS_OK && g < ngroups; g++) {
        uint32_t s;
        rc = set_new(f, 0, &s);
    }
    for (uint32_t i = 0; rc == DFS_OK && i < n; i++) {
        uint32_t g = i < ngroups * G ? i / G : (i - ngroups * G) % ngroups;
        rc = set_push(&f->sets[first + g], v[i]);
    }
    free(v);
    *changed = true;
    return rc;
}

static int bd_join(struct family *f, uint32_t x, bool zoned, dfs_rng *rng, bool *changed)
{
    uint32_t g = bd_smallest(f, NONE, f->mem[x].zone, zoned, rng);
    int rc = set_push(&f->sets[g], x);
    if (rc == DFS_OK)
        rc = bd_split(f, g, zoned, rng);
    *changed = true;
    return rc;
}

/* Remove the leaving members from their groups; merge groups left with fewer than w members. */
static int bd_leave(struct family *f, bool zoned, dfs_rng *rng, bool *changed)
{
    for (uint32_t g = 0; g < f->nsets;) {
        struct pset *s = &f->sets[g];
        uint32_t n = 0;
        for (uint32_t j = 0; j < s->n; j++) {
            if (!leaving(&f->mem[s->m[j]]))
                s->m[n++] = s->m[j];
        }
        if (n != s->n)
            *changed = true;
        s->n = n;
        if (n == 0)
            set_delete(f, g);
        else
            g++;
    }
    int rc = DFS_OK;
    for (uint32_t g = 0; rc == DFS_OK && f->nsets > 1 && g < f->nsets;) {
        if (f->sets[g].n >= f->width) {
            g++;
            continue;
        }
        uint32_t t = bd_smallest(f, g, NONE, false, rng);
        for (uint32_t j = 0; rc == DFS_OK && j < f->sets[g].n; j++)
            rc = set_push(&f->sets[t], f->sets[g].m[j]);
        if (rc != DFS_OK)
            break;
        set_delete(f, g);
        if (t > g)
            t--;
        rc = bd_split(f, t, zoned, rng);
        *changed = true;
        g = 0; /* indices moved: look again from the start */
    }
    return rc;
}

/* ---- Sync ------------------------------------------------------------------------------------ */

/* Drop the leaving members and renumber the others in the sets. */
static int compact_members(struct family *f)
{
    uint32_t *map = malloc(((size_t)f->nmem + 1) * sizeof *map);
    if (map == NULL)
        return DFS_ENOMEM;
    uint32_t n = 0;
    for (uint32_t i = 0; i < f->nmem; i++) {
        if (leaving(&f->mem[i])) {
            free(f->ids[i]);
            map[i] = NONE;
            continue;
        }
        f->ids[n] = f->ids[i];
        f->mem[n] = f->mem[i];
        map[i] = n++;
    }
    f->nmem = n;
    for (uint32_t s = 0; s < f->nsets; s++) {
        for (uint32_t j = 0; j < f->sets[s].n; j++) {
            assert(map[f->sets[s].m[j]] != NONE);
            f->sets[s].m[j] = map[f->sets[s].m[j]];
        }
    }
    free(map);
    return strmap_rebuild(&f->idmap, f->ids, f->nmem);
}

/* Rebuild the placement indexes from the members and sets. */
static int derive(struct family *f, size_t nnodes)
{
    free_indexes(f);
    uint32_t nz = 0;
    int rc = zones_spanned(f, true, &nz);
    if (rc != DFS_OK)
        return rc;
    f->zoned = nz >= f->width;
    for (uint32_t i = 0; i < f->nmem; i++)
        f->nwritable += f->mem[i].writable;

    size_t total = 0;
    for (uint32_t s = 0; s < f->nsets; s++)
        total += f->sets[s].n;
    /* Orders that follow the caller's array, not the member numbers, so that a state exported
       and imported again (numbered otherwise) chooses exactly as the original. */
    f->byext = malloc((nnodes + 1) * sizeof *f->byext);
    if (f->byext == NULL)
        return DFS_ENOMEM;
    for (size_t i = 0; i < nnodes; i++)
        f->byext[i] = NONE;
    for (uint32_t i = 0; i < f->nmem; i++)
        f->byext[f->mem[i].ext] = i;
    f->ns_off = calloc((size_t)f->nmem + 1, sizeof *f->ns_off);
    f->ns = malloc((total + 1) * sizeof *f->ns);
    if (f->ns_off == NULL || f->ns == NULL)
        return DFS_ENOMEM;
    for (uint32_t s = 0; s < f->nsets; s++)
        for (uint32_t j = 0; j < f->sets[s].n; j++)
            f->ns_off[f->sets[s].m[j] + 1]++;
    for (uint32_t i = 0; i < f->nmem; i++)
        f->ns_off[i + 1] += f->ns_off[i];
    uint32_t *fill = calloc((size_t)f->nmem + 1, sizeof *fill);
    if (fill == NULL)
        return DFS_ENOMEM;
    for (uint32_t s = 0; s < f->nsets; s++)
        for (uint32_t j = 0; j < f->sets[s].n; j++) {
            uint32_t m = f->sets[s].m[j];
            f->ns[f->ns_off[m] + fill[m]++] = s;
        }
    free(fill);

    if (f->policy == DFS_POLICY_MIN_COPY) {
        f->set_ok = calloc((size_t)f->nsets + 1, 1);
        f->primaries = malloc(((size_t)f->nmem + 1) * sizeof *f->primaries);
        if (f->set_ok == NULL || f->primaries == NULL)
            return DFS_ENOMEM;
        for (uint32_t s = 0; s < f->nsets; s++) {
            bool ok = true;
            for (uint32_t j = 0; j < f->sets[s].n && ok; j++)
                ok = f->mem[f->sets[s].m[j]].writable;
            f->set_ok[s] = ok;
        }
        for (size_t e = 0; e < nnodes; e++) {
            uint32_t i = f->byext[e];
            bool any = false;
            for (uint32_t j = i == NONE ? 0 : f->ns_off[i];
                 i != NONE && j < f->ns_off[i + 1] && !any; j++)
                any = f->set_ok[f->ns[j]];
            if (any)
                f->primaries[f->nprimaries++] = i;
        }
    } else {
        f->gw_off = calloc((size_t)f->nsets + 1, sizeof *f->gw_off);
        f->gw = malloc((total + 1) * sizeof *f->gw);
        f->elig = malloc(((size_t)f->nsets + 1) * sizeof *f->elig);
        f->cum = malloc(((size_t)f->nsets + 1) * sizeof *f->cum);
        if (f->gw_off == NULL || f->gw == NULL || f->elig == NULL || f->cum == NULL)
            return DFS_ENOMEM;
        uint32_t k = 0;
        uint64_t sum = 0;
        for (uint32_t g = 0; g < f->nsets; g++) {
            f->gw_off[g] = k;
            for (uint32_t j = 0; j < f->sets[g].n; j++)
                if (f->mem[f->sets[g].m[j]].writable)
                    f->gw[k++] = f->sets[g].m[j];
            uint32_t nw = k - f->gw_off[g];
            if (nw >= f->width) {
                sum += nw;
                f->elig[f->nelig] = g;
                f->cum[f->nelig++] = sum;
            }
        }
        f->gw_off[f->nsets] = k;
    }
    f->synced = true;
    f->synced_n = nnodes;
    return DFS_OK;
}

/*
 * Classify the array against the members (pass 1, no allocation), add the new nodes (pass 2),
 * then repair, extend and re-index when anything changed. Returns DFS_EINVAL with the family
 * intact, or another error after which the caller drops the family.
 */
static int sync_family(dfs_placement *pl, struct family *f, const struct dfs_placement_node *nodes,
                       size_t nnodes, dfs_rng *rng, bool *changed, bool *fatal, char **errmsg)
{
    bool dirty = !f->synced || f->synced_n != nnodes;
    uint32_t njoin = 0, nleave = 0, old_nmem = f->nmem;
    for (uint32_t i = 0; i < f->nmem; i++)
        f->mem[i].st = M_ABSENT;
    for (size_t i = 0; i < nnodes; i++) {
        const struct dfs_placement_node *nd = &nodes[i];
        if (nd->id == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL, "placement: candidate %zu has no node id", i);
        uint32_t m = strmap_find(&f->idmap, f->ids, nd->id);
        if (m == NONE) {
            njoin += !nd->gone;
            continue;
        }
        struct member *mb = &f->mem[m];
        if (mb->st != M_ABSENT)
            return dfs_seterr(errmsg, DFS_EINVAL, "placement: node id '%s' appears twice", nd->id);
        mb->st = nd->gone ? M_GONE : M_PRESENT;
        if (nd->gone)
            continue;
        bool writable = nd->writable;
        if (mb->ext != i || mb->writable != writable ||
            strcmp(f->zones[mb->zone], zone_str(nd->zone)) != 0)
            dirty = true;
    }
    for (uint32_t i = 0; i < f->nmem; i++)
        nleave += leaving(&f->mem[i]);
    bool params = want_param(pl, f->policy, f->width) != f->param;
    if (!dirty && njoin == 0 && nleave == 0 && !params)
        return DFS_OK;

    /* From here on the family changes; an allocation failure leaves it unusable. */
    *fatal = true;
    int rc = DFS_OK;
    for (size_t i = 0; rc == DFS_OK && i < nnodes; i++) {
        const struct dfs_placement_node *nd = &nodes[i];
        uint32_t m = strmap_find(&f->idmap, f->ids, nd->id), z = 0;
        if (m == NONE && nd->gone)
            continue;
        if (m != NONE && f->mem[m].st == M_FRESH) {
            *fatal = false; /* undo the joins below */
            rc = dfs_seterr(errmsg, DFS_EINVAL, "placement: node id '%s' appears twice", nd->id);
            break;
        }
        if (m != NONE && f->mem[m].st == M_GONE)
            continue;
        rc = zone_intern(f, nd->zone, &z);
        if (rc == DFS_OK && m == NONE)
            rc = member_add(f, nd->id, z, &m);
        if (rc == DFS_OK) {
            f->mem[m].zone = z;
            f->mem[m].ext = (uint32_t)i;
            f->mem[m].writable = nd->writable;
        }
    }
    if (rc == DFS_EINVAL) {
        while (f->nmem > old_nmem)
            free(f->ids[--f->nmem]);
        f->synced = false;
        if (strmap_rebuild(&f->idmap, f->ids, f->nmem) != DFS_OK)
            *fatal = true;
        return rc;
    }
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, rc, "placement: out of memory");

    bool ch = false;
    uint32_t nz = 0;
    rc = zones_spanned(f, false, &nz);
    bool zoned = nz >= f->width;
    if (rc == DFS_OK && nleave > 0) {
        rc = f->policy == DFS_POLICY_MIN_COPY ? mc_repair(f, zoned, rng, &ch)
                                              : bd_leave(f, zoned, rng, &ch);
        if (rc == DFS_OK)
            rc = compact_members(f);
    }
    if (rc == DFS_OK && params) {
        uint32_t want = want_param(pl, f->policy, f->width);
        if (f->policy == DFS_POLICY_MIN_COPY) {
            uint32_t p = perms_for(want, f->width);
            for (uint32_t s = 0; s < f->nsets;) {
                if (f->sets[s].perm >= p)
                    set_delete(f, s);
                else
                    s++;
            }
            f->nperms = p;
        } else {
            free_sets(f); /* a new group size: the groups are built again */
        }
        f->param = want;
        ch = true;
    }
    if (rc == DFS_OK && f->policy == DFS_POLICY_MIN_COPY) {
        rc = mc_extend(f, zoned, rng, &ch);
    } else if (rc == DFS_OK && f->nsets == 0) {
        rc = bd_build(f, zoned, rng, &ch);
    } else {
        for (uint32_t i = 0; rc == DFS_OK && i < f->nmem; i++)
            if (f->mem[i].st == M_FRESH)
                rc = bd_join(f, i, zoned, rng, &ch);
    }
    if (rc == DFS_OK)
        rc = derive(f, nnodes);
    if (rc != DFS_OK)
        return dfs_seterr(errmsg, rc, "placement: out of memory");
    *changed = ch;
    *fatal = false;
    return DFS_OK;
}

int dfs_placement_sync(dfs_placement *pl, enum dfs_policy policy, size_t width,
                       const struct dfs_placement_node *nodes, size_t nnodes, dfs_rng *rng,
                       bool *changed, char **errmsg)
{
    if (pl == NULL || rng == NULL || changed == NULL || (nodes == NULL && nnodes > 0))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: missing argument");
    if (policy == DFS_POLICY_RANDOM || policy == DFS_POLICY_LEAST_USED) {
        *changed = false;
        return DFS_OK;
    }
    if (!dfs_placement_policy_has_sets(policy))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: no policy given (%d)", (int)policy);
    if (width == 0 || width > DFS_PLACEMENT_WIDTH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: width %zu is not 1..%d", width,
                          DFS_PLACEMENT_WIDTH_MAX);
    if (nnodes >= NONE - 1)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: too many nodes (%zu)", nnodes);
    struct family *f = family_find(pl, policy, width);
    if (f == NULL) {
        uint32_t w = (uint32_t)width, param = want_param(pl, policy, w);
        f = family_new(policy, w, param, policy == DFS_POLICY_MIN_COPY ? perms_for(param, w) : 1);
        if (f == NULL || family_put(pl, f) != DFS_OK) {
            family_free(f);
            return dfs_seterr(errmsg, DFS_ENOMEM, "placement: out of memory");
        }
    }
    bool fatal = false, ch = false;
    int rc = sync_family(pl, f, nodes, nnodes, rng, &ch, &fatal, errmsg);
    if (rc != DFS_OK) {
        if (fatal)
            family_drop(pl, policy, width);
        return rc;
    }
    *changed = ch;
    return DFS_OK;
}

/* ---- Choosing: the policies without sets (and the fallback) ----------------------------------- */

static bool in_list(const char *id, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (list[i] != NULL && strcmp(id, list[i]) == 0)
            return true;
    }
    return false;
}

static bool eligible(const struct dfs_placement_node *node, const struct dfs_placement_request *req)
{
    return node->writable && !node->gone && !in_list(node->id, req->placed, req->nplaced) &&
           !in_list(node->id, req->exclude, req->nexclude);
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return (x > y) - (x < y);
}

static int too_few(char **errmsg, size_t k, size_t m, size_t writable)
{
    if (writable == m)
        return dfs_seterr(errmsg, DFS_EPRECOND,
                          "need %zu distinct live storage node%s, %zu %s available", k,
                          k == 1 ? "" : "s", m, m == 1 ? "is" : "are");
    return dfs_seterr(errmsg, DFS_EPRECOND,
                      "need %zu distinct live storage node%s, %zu %s available (%zu more "
                      "already hold this fragment or failed for it)",
                      k, k == 1 ? "" : "s", m, m == 1 ? "is" : "are", writable - m);
}

/*
 * Uniform k-subset of the m eligible nodes in uniformly random order. Floyd's algorithm draws k
 * distinct ranks in [0, m) with exactly k random numbers (each k-subset equally likely); the ranks
 * are then sorted, mapped to node indices in one pass over the candidates, and shuffled so that the
 * order is uniform too. out[] doubles as the scratch space, so nothing is allocated.
 */
static void choose_uniform(const struct dfs_placement_request *req,
                           const struct dfs_placement_node *nodes, size_t nnodes, size_t m,
                           dfs_rng *rng, size_t *out)
{
    size_t k = req->k;
    for (size_t j = m - k, got = 0; j < m; j++) {
        size_t t = (size_t)dfs_rng_below(rng, (uint64_t)j + 1);
        bool dup = false;
        for (size_t i = 0; i < got && !dup; i++)
            dup = out[i] == t;
        out[got++] = dup ? j : t;
    }
    qsort(out, k, sizeof out[0], cmp_size);
    size_t rank = 0, next = 0;
    for (size_t i = 0; i < nnodes && next < k; i++) {
        if (!eligible(&nodes[i], req))
            continue;
        if (rank == out[next])
            out[next++] = i;
        rank++;
    }
    shuffle_size(rng, out, k);
}

/* Whether nodes[i]'s zone is the zone of one of nodes[idx[0..n)]. */
static bool zone_among(const struct dfs_placement_node *nodes, size_t i, const size_t *idx,
                       size_t n)
{
    for (size_t j = 0; j < n; j++) {
        if (same_zone(nodes[i].zone, nodes[idx[j]].zone))
            return true;
    }
    return false;
}

/* Whether the writable nodes span at least `width` zones (a scratch of width pointers). */
static int count_zones(const struct dfs_placement_node *nodes, size_t nnodes, size_t width,
                       bool *zoned)
{
    const char *small[64];
    const char **zs = width <= 64 ? small : malloc(width * sizeof *zs);
    if (zs == NULL)
        return DFS_ENOMEM;
    size_t nz = 0;
    for (size_t i = 0; i < nnodes && nz < width; i++) {
        if (!nodes[i].writable || nodes[i].gone)
            continue;
        bool seen = false;
        for (size_t j = 0; j < nz && !seen; j++)
            seen = same_zone(zs[j], nodes[i].zone);
        if (!seen)
            zs[nz++] = nodes[i].zone;
    }
    if (zs != small)
        free(zs);
    *zoned = nz >= width;
    return DFS_OK;
}

/*
 * random (least = false) and least_used (least = true) over the whole array, also the fallback of
 * min_copy and buddy. Without zone mode, random is choose_uniform and least_used takes the k most
 * free nodes, ties at random. In zone mode the nodes are taken one at a time from the best tier:
 * 0 = a zone neither the anchors nor the nodes taken so far use, 1 = a zone only anchors use,
 * 2 = any; uniformly (random) or the most free (least_used, ties at random) within the tier.
 */
static int choose_flat(const struct dfs_placement_request *req, size_t width,
                       const struct dfs_placement_node *nodes, size_t nnodes, dfs_rng *rng,
                       bool least, size_t *out, bool *zoned_out, char **errmsg)
{
    size_t k = req->k, writable = 0, m = 0;
    for (size_t i = 0; i < nnodes; i++) {
        if (nodes[i].id == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL, "placement: candidate %zu has no node id", i);
        if (!nodes[i].writable || nodes[i].gone)
            continue;
        writable++;
        if (eligible(&nodes[i], req))
            m++;
    }
    if (m < k)
        return too_few(errmsg, k, m, writable);
    bool zoned = false;
    if (count_zones(nodes, nnodes, width, &zoned) != DFS_OK)
        return dfs_seterr(errmsg, DFS_ENOMEM, "placement: out of memory");
    *zoned_out = zoned;
    if (!zoned && !least) {
        choose_uniform(req, nodes, nnodes, m, rng, out);
        return DFS_OK;
    }
    size_t *anchors = NULL, na = 0;
    if (zoned && req->nplaced > 0) {
        anchors = malloc(req->nplaced * sizeof *anchors);
        if (anchors == NULL)
            return dfs_seterr(errmsg, DFS_ENOMEM, "placement: out of memory");
        for (size_t i = 0; i < nnodes && na < req->nplaced; i++) {
            if (in_list(nodes[i].id, req->placed, req->nplaced) &&
                !in_list(nodes[i].id, req->exclude, req->nexclude))
                anchors[na++] = i;
        }
    }
    for (size_t j = 0; j < k; j++) {
        /* Pass 1: per tier, the candidates, the largest free space and how many have it. */
        size_t cnt[3] = {0, 0, 0}, top[3] = {0, 0, 0};
        uint64_t best[3] = {0, 0, 0};
        for (size_t i = 0; i < nnodes; i++) {
            if (!eligible(&nodes[i], req))
                continue;
            bool taken = false;
            for (size_t t = 0; t < j && !taken; t++)
                taken = out[t] == i;
            if (taken)
                continue;
            int tier = !zoned || zone_among(nodes, i, out, j) ? 2
                       : zone_among(nodes, i, anchors, na)    ? 1
                                                              : 0;
            uint64_t fb = nodes[i].free_bytes;
            if (cnt[tier]++ == 0 || fb > best[tier]) {
                best[tier] = fb;
                top[tier] = 1;
            } else if (fb == best[tier]) {
                top[tier]++;
            }
        }
        int tier = cnt[0] > 0 ? 0 : cnt[1] > 0 ? 1 : 2;
        /* Pass 2: the r-th candidate of the tier (among the most free ones for least_used). */
        size_t r = (size_t)dfs_rng_below(rng, least ? top[tier] : cnt[tier]);
        for (size_t i = 0; i < nnodes; i++) {
            if (!eligible(&nodes[i], req))
                continue;
            bool taken = false;
            for (size_t t = 0; t < j && !taken; t++)
                taken = out[t] == i;
            if (taken)
                continue;
            int ti = !zoned || zone_among(nodes, i, out, j) ? 2
                     : zone_among(nodes, i, anchors, na)    ? 1
                                                            : 0;
            if (ti != tier || (least && nodes[i].free_bytes != best[tier]))
                continue;
            if (r-- == 0) {
                out[j] = i;
                break;
            }
        }
    }
    free(anchors);
    shuffle_size(rng, out, k);
    return DFS_OK;
}

/* ---- Choosing: min_copy and buddy ------------------------------------------------------------ */

/* Take out[0..k) (member numbers) over to array indices, checking the array is the synced one. */
static int to_ext(const struct family *f, const struct dfs_placement_node *nodes, size_t nnodes,
                  size_t *out, size_t k, char **errmsg)
{
    for (size_t j = 0; j < k; j++) {
        uint32_t m = (uint32_t)out[j], e = f->mem[m].ext;
        if (e >= nnodes || nodes[e].id == NULL || strcmp(nodes[e].id, f->ids[m]) != 0 ||
            !nodes[e].writable || nodes[e].gone)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "placement: %s state of width %" PRIu32
                              " is out of date: sync it with this node list first",
                              dfs_placement_policy_name(f->policy), f->width);
        out[j] = e;
    }
    return DFS_OK;
}

static bool member_zone_among(const struct family *f, uint32_t m, const size_t *v, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        if (f->mem[v[j]].zone == f->mem[m].zone)
            return true;
    }
    return false;
}

/*
 * Take k members among cand[0..nc) (all eligible) into out[] (member numbers): uniformly (Floyd),
 * or in zone mode one at a time from the best tier (0 = a zone neither anchors[0..na) nor the
 * members taken use, 1 = a zone only anchors use, 2 = any).
 */
static void pick_in_set(const struct family *f, const uint32_t *cand, size_t nc, size_t k,
                        const size_t *anchors, size_t na, bool zoned, dfs_rng *rng, size_t *out)
{
    if (!zoned) {
        for (size_t j = nc - k, got = 0; j < nc; j++) {
            size_t t = (size_t)dfs_rng_below(rng, (uint64_t)j + 1);
            bool dup = false;
            for (size_t i = 0; i < got && !dup; i++)
                dup = out[i] == t;
            out[got++] = dup ? j : t;
        }
        for (size_t j = 0; j < k; j++)
            out[j] = cand[out[j]];
        shuffle_size(rng, out, k);
        return;
    }
    for (size_t j = 0; j < k; j++) {
        size_t cnt[3] = {0, 0, 0};
        for (size_t i = 0; i < nc; i++) {
            bool taken = false;
            for (size_t t = 0; t < j && !taken; t++)
                taken = out[t] == cand[i];
            if (taken)
                continue;
            cnt[member_zone_among(f, cand[i], out, j)        ? 2
                : member_zone_among(f, cand[i], anchors, na) ? 1
                                                             : 0]++;
        }
        int tier = cnt[0] > 0 ? 0 : cnt[1] > 0 ? 1 : 2;
        size_t r = (size_t)dfs_rng_below(rng, cnt[tier]);
        for (size_t i = 0; i < nc; i++) {
            bool taken = false;
            for (size_t t = 0; t < j && !taken; t++)
                taken = out[t] == cand[i];
            if (taken)
                continue;
            int ti = member_zone_among(f, cand[i], out, j)        ? 2
                     : member_zone_among(f, cand[i], anchors, na) ? 1
                                                                  : 0;
            if (ti == tier && r-- == 0) {
                out[j] = cand[i];
                break;
            }
        }
    }
    shuffle_size(rng, out, k);
}

static const char *set_word(const struct family *f)
{
    return f->policy == DFS_POLICY_MIN_COPY ? "copyset" : "group";
}

/* A fresh placement with the indexes only: no scan of the nodes, no allocation. */
static int choose_fast(const struct family *f, size_t k, dfs_rng *rng, size_t *out, size_t *set,
                       char **errmsg)
{
    if (f->nwritable < k)
        return too_few(errmsg, k, f->nwritable, f->nwritable);
    if (f->policy == DFS_POLICY_MIN_COPY) {
        if (f->nprimaries == 0)
            return dfs_seterr(errmsg, DFS_EPRECOND,
                              "no min_copy copyset of %" PRIu32 " nodes is fully writable (%" PRIu32
                              " of %" PRIu32 " nodes are)",
                              f->width, f->nwritable, f->nmem);
        uint32_t x = f->primaries[dfs_rng_below(rng, f->nprimaries)], pick = NONE, n = 0;
        for (uint32_t j = f->ns_off[x]; j < f->ns_off[x + 1]; j++) {
            uint32_t s = f->ns[j];
            if (f->set_ok[s] && dfs_rng_below(rng, ++n) == 0)
                pick = s;
        }
        const struct pset *s = &f->sets[pick];
        for (uint32_t j = 0; j < s->n; j++)
            out[j] = s->m[j];
        shuffle_size(rng, out, s->n);
        *set = pick;
        return DFS_OK;
    }
    if (f->nelig == 0)
        return dfs_seterr(errmsg, DFS_EPRECOND,
                          "no buddy group has %" PRIu32 " writable nodes (%" PRIu32
                          " groups, %" PRIu32 " of %" PRIu32 " nodes writable)",
                          f->width, f->nsets, f->nwritable, f->nmem);
    uint64_t r = dfs_rng_below(rng, f->cum[f->nelig - 1]);
    uint32_t lo = 0, hi = f->nelig - 1;
    while (lo < hi) { /* the first i with cum[i] > r */
        uint32_t mid = lo + (hi - lo) / 2;
        if (f->cum[mid] > r)
            hi = mid;
        else
            lo = mid + 1;
    }
    uint32_t g = f->elig[lo];
    pick_in_set(f, &f->gw[f->gw_off[g]], f->gw_off[g + 1] - f->gw_off[g], k, NULL, 0, f->zoned, rng,
                out);
    *set = g;
    return DFS_OK;
}

/* Flags of choose_slow's scratch. */
#define F_EXCL   1 /* placed or excluded: not to be chosen */
#define F_ANCHOR 2 /* placed and not excluded: the set must hold it */

/*
 * A choice with placed or excluded nodes: the sets that hold every anchor and at least k eligible
 * members qualify. min_copy draws a primary among the members of qualifying sets, then one of its
 * qualifying sets; buddy draws a qualifying group in proportion to its eligible members. k
 * eligible members of the set are taken (zone-aware). *set = NONE when no set qualifies.
 */
static int choose_slow(const struct family *f, const struct dfs_placement_request *req, size_t k,
                       dfs_rng *rng, size_t *out, uint32_t *set, char **errmsg)
{
    *set = NONE;
    uint8_t *fl = calloc((size_t)f->nmem + 1, 1);
    uint32_t *cnt = calloc((size_t)f->nmem + 1, sizeof *cnt);
    uint32_t *cand = malloc(((size_t)f->nmem + 1) * sizeof *cand);
    size_t *anchors = malloc((req->nplaced + 1) * sizeof *anchors);
    uint8_t *qual = calloc((size_t)f->nsets + 1, 1);
    int rc = DFS_OK;
    if (fl == NULL || cnt == NULL || cand == NULL || anchors == NULL || qual == NULL) {
        rc = dfs_seterr(errmsg, DFS_ENOMEM, "placement: out of memory");
        goto out;
    }
    for (size_t i = 0; i < req->nplaced; i++) {
        uint32_t m = req->placed[i] == NULL ? NONE : strmap_find(&f->idmap, f->ids, req->placed[i]);
        if (m != NONE)
            fl[m] |= F_EXCL | F_ANCHOR;
    }
    for (size_t i = 0; i < req->nexclude; i++) {
        uint32_t m =
            req->exclude[i] == NULL ? NONE : strmap_find(&f->idmap, f->ids, req->exclude[i]);
        if (m != NONE)
            fl[m] = F_EXCL;
    }
    size_t na = 0, m_el = 0;
    for (uint32_t i = 0; i < f->nmem; i++) {
        if (fl[i] & F_ANCHOR)
            anchors[na++] = i;
        m_el += f->mem[i].writable && !(fl[i] & F_EXCL);
    }
    if (m_el < k) {
        rc = too_few(errmsg, k, m_el, f->nwritable);
        goto out;
    }
    /* Qualifying sets; per member, how many of them hold it; buddy: the total weight. */
    uint64_t total = 0;
    uint32_t nq = 0;
    for (uint32_t s = 0; s < f->nsets; s++) {
        const struct pset *st = &f->sets[s];
        size_t nanch = 0, nel = 0;
        for (uint32_t j = 0; j < st->n; j++) {
            uint32_t m = st->m[j];
            nanch += (fl[m] & F_ANCHOR) != 0;
            nel += f->mem[m].writable && !(fl[m] & F_EXCL);
        }
        if (nanch != na || nel < k)
            continue;
        qual[s] = 1;
        nq++;
        total += nel;
        for (uint32_t j = 0; j < st->n; j++)
            cnt[st->m[j]]++;
    }
    if (nq == 0)
        goto out;
    uint32_t pick = NONE;
    if (f->policy == DFS_POLICY_MIN_COPY) {
        uint32_t np = 0, x = NONE, n = 0;
        for (uint32_t i = 0; i < f->nmem; i++)
            np += cnt[i] > 0;
        uint32_t r = (uint32_t)dfs_rng_below(rng, np);
        for (size_t e = 0; e < f->synced_n && x == NONE; e++) {
            uint32_t i = f->byext[e];
            if (i != NONE && cnt[i] > 0 && r-- == 0)
                x = i;
        }
        for (uint32_t j = f->ns_off[x]; j < f->ns_off[x + 1]; j++) {
            if (qual[f->ns[j]] && dfs_rng_below(rng, ++n) == 0)
                pick = f->ns[j];
        }
    } else {
        uint64_t r = dfs_rng_below(rng, total);
        for (uint32_t s = 0; s < f->nsets && pick == NONE; s++) {
            if (!qual[s])
                continue;
            uint64_t nel = 0;
            for (uint32_t j = 0; j < f->sets[s].n; j++) {
                uint32_t m = f->sets[s].m[j];
                nel += f->mem[m].writable && !(fl[m] & F_EXCL);
            }
            if (r < nel)
                pick = s;
            else
                r -= nel;
        }
    }
    size_t nc = 0;
    for (uint32_t j = 0; j < f->sets[pick].n; j++) {
        uint32_t m = f->sets[pick].m[j];
        if (f->mem[m].writable && !(fl[m] & F_EXCL))
            cand[nc++] = m;
    }
    pick_in_set(f, cand, nc, k, anchors, na, f->zoned, rng, out);
    *set = pick;
out:
    free(fl);
    free(cnt);
    free(cand);
    free(anchors);
    free(qual);
    return rc;
}

static int choose_sets(const dfs_placement *pl, const struct dfs_placement_request *req,
                       size_t width, const struct dfs_placement_node *nodes, size_t nnodes,
                       dfs_rng *rng, size_t *out, struct dfs_placement_outcome *oc, char **errmsg)
{
    const struct family *f = pl == NULL ? NULL : family_find(pl, req->policy, width);
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "placement: no %s state for width %zu: sync it with the node list first",
                          dfs_placement_policy_name(req->policy), width);
    if (!f->synced || f->synced_n != nnodes)
        return dfs_seterr(errmsg, DFS_EINVAL,
                          "placement: %s state of width %zu is out of date: sync it with this "
                          "node list first",
                          dfs_placement_policy_name(req->policy), width);
    size_t k = req->k;
    int rc;
    if (req->nplaced == 0 && req->nexclude == 0 && k == width) {
        size_t set = SIZE_MAX;
        rc = choose_fast(f, k, rng, out, &set, errmsg);
        if (rc == DFS_OK) {
            oc->set = set;
            oc->zones = f->zoned;
            rc = to_ext(f, nodes, nnodes, out, k, errmsg);
        }
        return rc;
    }
    uint32_t set = NONE;
    rc = choose_slow(f, req, k, rng, out, &set, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (set != NONE) {
        oc->set = set;
        oc->zones = f->zoned;
        return to_ext(f, nodes, nnodes, out, k, errmsg);
    }
    if (req->fallback) {
        oc->fallback = true;
        return choose_flat(req, width, nodes, nnodes, rng, false, out, &oc->zones, errmsg);
    }
    if (req->nplaced > 0)
        return dfs_seterr(errmsg, DFS_EPRECOND,
                          "no %s %s of %zu nodes holds the nodes already placed and %zu more "
                          "usable node%s",
                          dfs_placement_policy_name(f->policy), set_word(f), width, k,
                          k == 1 ? "" : "s");
    return dfs_seterr(errmsg, DFS_EPRECOND,
                      "no %s %s of %zu nodes has %zu usable nodes now (%" PRIu32 " of %" PRIu32
                      " nodes are writable)",
                      dfs_placement_policy_name(f->policy), set_word(f), width, k, f->nwritable,
                      f->nmem);
}

int dfs_placement_choose(const dfs_placement *pl, const struct dfs_placement_request *req,
                         const struct dfs_placement_node *nodes, size_t nnodes, dfs_rng *rng,
                         size_t *out, struct dfs_placement_outcome *outcome, char **errmsg)
{
    struct dfs_placement_outcome oc = {.set = SIZE_MAX};
    if (req == NULL || rng == NULL || out == NULL || (nodes == NULL && nnodes > 0) ||
        (req->placed == NULL && req->nplaced > 0) || (req->exclude == NULL && req->nexclude > 0))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: missing argument");
    if (req->k == 0)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: asked for 0 nodes");
    size_t width = req->width != 0 ? req->width : req->k;
    if (req->k > width)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: %zu nodes asked of a placement of %zu",
                          req->k, width);
    int rc;
    switch (req->policy) {
    case DFS_POLICY_RANDOM:
    case DFS_POLICY_LEAST_USED:
        rc = choose_flat(req, width, nodes, nnodes, rng, req->policy == DFS_POLICY_LEAST_USED, out,
                         &oc.zones, errmsg);
        break;
    case DFS_POLICY_MIN_COPY:
    case DFS_POLICY_BUDDY:
        rc = choose_sets(pl, req, width, nodes, nnodes, rng, out, &oc, errmsg);
        break;
    case DFS_POLICY_UNSPECIFIED:
    default:
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: no policy given (%d)", (int)req->policy);
    }
    if (rc == DFS_OK && outcome != NULL)
        *outcome = oc;
    return rc;
}

/* ---- Life cycle ------------------------------------------------------------------------------ */

int dfs_placement_create(const struct dfs_placement_config *cfg, dfs_placement **out, char **errmsg)
{
    struct dfs_placement_config c = {0};
    if (cfg != NULL)
        c = *cfg;
    if (c.group_size == 1)
        return dfs_seterr(errmsg, DFS_EINVAL, "a buddy group needs at least 2 nodes");
    if (c.group_size > DFS_PLACEMENT_GROUP_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "group size %" PRIu32 " is above %d", c.group_size,
                          DFS_PLACEMENT_GROUP_MAX);
    if (c.scatter_width > DFS_PLACEMENT_SCATTER_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "scatter width %" PRIu32 " is above %d",
                          c.scatter_width, DFS_PLACEMENT_SCATTER_MAX);
    dfs_placement *pl = calloc(1, sizeof *pl);
    if (pl == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    pl->cfg = c;
    *out = pl;
    return DFS_OK;
}

void dfs_placement_destroy(dfs_placement *pl)
{
    if (pl == NULL)
        return;
    for (size_t i = 0; i < pl->nfam; i++)
        family_free(pl->fam[i]);
    free(pl->fam);
    free(pl);
}

/* ---- Export and import ----------------------------------------------------------------------- */

void dfs_placement_states_free(struct dfs_placement_state *states, size_t n)
{
    if (states == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        struct dfs_placement_state *st = &states[i];
        for (size_t s = 0; st->sets != NULL && s < st->nsets; s++) {
            for (size_t j = 0; st->sets[s].node_ids != NULL && j < st->sets[s].nnodes; j++)
                free(st->sets[s].node_ids[j]);
            free(st->sets[s].node_ids);
        }
        free(st->sets);
    }
    free(states);
}

int dfs_placement_export(const dfs_placement *pl, enum dfs_policy policy, size_t width,
                         struct dfs_placement_state **out, char **errmsg)
{
    if (pl == NULL || out == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: missing argument");
    const struct family *f = family_find(pl, policy, width);
    if (f == NULL)
        return dfs_seterr(errmsg, DFS_ENOTFOUND, "placement: no %s state for width %zu",
                          dfs_placement_policy_name(policy), width);
    struct dfs_placement_state *st = calloc(1, sizeof *st);
    if (st == NULL)
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    st->policy = f->policy;
    st->width = f->width;
    st->param = f->param;
    st->nperms = f->nperms;
    st->sets = calloc((size_t)f->nsets + 1, sizeof *st->sets);
    bool ok = st->sets != NULL;
    if (ok)
        st->nsets = f->nsets;
    for (uint32_t s = 0; ok && s < f->nsets; s++) {
        struct dfs_placement_set *d = &st->sets[s];
        d->perm = f->sets[s].perm;
        d->node_ids = calloc((size_t)f->sets[s].n + 1, sizeof *d->node_ids);
        ok = d->node_ids != NULL;
        for (uint32_t j = 0; ok && j < f->sets[s].n; j++) {
            ok = (d->node_ids[j] = strdup(f->ids[f->sets[s].m[j]])) != NULL;
            d->nnodes += ok;
        }
    }
    if (!ok) {
        dfs_placement_states_free(st, 1);
        return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
    }
    *out = st;
    return DFS_OK;
}

/* Check a state before importing it: everything dfs_placement_import promises to refuse. */
static int check_state(const struct dfs_placement_state *st, char **errmsg)
{
    if (!dfs_placement_policy_has_sets(st->policy))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement state: policy '%s' keeps no sets",
                          dfs_placement_policy_name(st->policy));
    if (st->width == 0 || st->width > DFS_PLACEMENT_WIDTH_MAX)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement state: width %" PRIu32 " is not 1..%d",
                          st->width, DFS_PLACEMENT_WIDTH_MAX);
    if (st->nperms == 0 || (st->policy == DFS_POLICY_BUDDY && st->nperms != 1))
        return dfs_seterr(errmsg, DFS_EINVAL, "placement state: %" PRIu32 " permutations",
                          st->nperms);
    if (st->policy == DFS_POLICY_BUDDY && st->param < 2)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement state: group size %" PRIu32, st->param);
    if (st->nsets > 0 && st->sets == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement state: missing sets");
    for (size_t s = 0; s < st->nsets; s++) {
        const struct dfs_placement_set *d = &st->sets[s];
        if (st->policy == DFS_POLICY_MIN_COPY && d->nnodes != st->width)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "placement state: copyset %zu has %zu nodes, not %" PRIu32, s,
                              d->nnodes, st->width);
        if (d->nnodes == 0 || d->node_ids == NULL)
            return dfs_seterr(errmsg, DFS_EINVAL, "placement state: set %zu is empty", s);
        if (d->perm >= st->nperms)
            return dfs_seterr(errmsg, DFS_EINVAL,
                              "placement state: set %zu is of permutation %" PRIu32 " of %" PRIu32,
                              s, d->perm, st->nperms);
        for (size_t j = 0; j < d->nnodes; j++) {
            if (d->node_ids[j] == NULL || d->node_ids[j][0] == '\0')
                return dfs_seterr(errmsg, DFS_EINVAL, "placement state: set %zu has no id at %zu",
                                  s, j);
            for (size_t i = 0; i < j; i++)
                if (strcmp(d->node_ids[i], d->node_ids[j]) == 0)
                    return dfs_seterr(errmsg, DFS_EINVAL,
                                      "placement state: set %zu holds node '%s' twice", s,
                                      d->node_ids[j]);
        }
    }
    return DFS_OK;
}

int dfs_placement_import(dfs_placement *pl, const struct dfs_placement_state *st, char **errmsg)
{
    if (pl == NULL || st == NULL)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement: missing argument");
    int rc = check_state(st, errmsg);
    if (rc != DFS_OK)
        return rc;
    if (st->nsets >= NONE - 1)
        return dfs_seterr(errmsg, DFS_EINVAL, "placement state: too many sets");
    struct family *f = family_new(st->policy, st->width, st->param, st->nperms);
    rc = f == NULL ? DFS_ENOMEM : DFS_OK;
    uint32_t z = 0;
    if (rc == DFS_OK)
        rc = zone_intern(f, "", &z);
    for (size_t s = 0; rc == DFS_OK && s < st->nsets; s++) {
        uint32_t si;
        rc = set_new(f, st->sets[s].perm, &si);
        for (size_t j = 0; rc == DFS_OK && j < st->sets[s].nnodes; j++) {
            const char *id = st->sets[s].node_ids[j];
            uint32_t m = strmap_find(&f->idmap, f->ids, id);
            if (m == NONE) {
                rc = member_add(f, id, z, &m);
            } else if (st->policy == DFS_POLICY_BUDDY) {
                rc = dfs_seterr(errmsg, DFS_EINVAL, "placement state: node '%s' is in two groups",
                                id);
                break;
            }
            if (rc == DFS_OK)
                rc = set_push(&f->sets[si], m);
        }
    }
    if (rc == DFS_OK) {
        for (uint32_t i = 0; i < f->nmem; i++)
            f->mem[i].st = M_PRESENT;
        rc = family_put(pl, f);
        if (rc == DFS_OK)
            return DFS_OK;
    }
    family_free(f);
    if (rc == DFS_EINVAL)
        return rc;
    family_drop(pl, st->policy, st->width);
    return dfs_seterr(errmsg, DFS_ENOMEM, "out of memory");
}
