/* The walk of an xgboost forest for path contributions (scorer.model.tree_walk, which documents
 * the records and the rules). Plain C with no Python headers: loaded with ctypes. */
#include <math.h>
#include <stdint.h>

/* numpy's tree_walk.SPLIT (align=True): 40 bytes, the same layout. */
typedef struct {
    int32_t child[2]; /* left, right */
    int32_t feature, column;
    float threshold;
    uint8_t default_right, categorical;
    double child_delta[2]; /* the move to each child, charged to `column` */
} Split;

_Static_assert(sizeof(Split) == 40, "Split must match tree_walk.SPLIT");

#ifndef BLOCK
#define BLOCK 64
#endif
#define MAX_CATEGORY 16777216.0f /* 2^24: xgboost's first invalid category */

/* Whether a category (value, present) goes right at node k: in the node's set. */
static int category_right(int64_t k, float value, const int64_t *category_start,
                          const uint32_t *category_words) {
    if (!(value >= 0.0f && value < MAX_CATEGORY)) return 0;
    int64_t category = (int64_t)value;
    int64_t word = category >> 5;
    int64_t begin = category_start[k];
    if (word >= category_start[k + 1] - begin) return 0;
    return (category_words[begin + word] >> (category & 31)) & 1u;
}

/* out (rows x width, row-major) = base, plus the move to every child on each row's path through
 * every tree: each tree takes a block of rows down one level at a time, choosing each child
 * without a branch. x is rows x columns, row-major float32. */
void scorer_walk(const float *x, int64_t rows, int64_t columns, const Split *splits,
                 const int32_t *roots, const int32_t *depth, int64_t trees,
                 const int64_t *category_start, const uint32_t *category_words,
                 const double *base, int64_t width, double *out) {
    int32_t node[BLOCK];
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < width; c++) out[r * width + c] = base[c];
    for (int64_t start = 0; start < rows; start += BLOCK) {
        int64_t block = rows - start < BLOCK ? rows - start : BLOCK;
        const float *xb = x + start * columns;
        double *ob = out + start * width;
        for (int64_t t = 0; t < trees; t++) {
            for (int64_t i = 0; i < block; i++) node[i] = roots[t];
            for (int32_t level = 0; level < depth[t]; level++) {
                for (int64_t i = 0; i < block; i++) {
                    const Split *s = &splits[node[i]];
                    float value = xb[i * columns + s->feature];
                    int missing = isnan(value);
                    int right = s->categorical
                                    ? category_right(node[i], value, category_start, category_words)
                                    : !(value < s->threshold);
                    right = (missing & s->default_right) | (!missing & right);
                    ob[i * width + s->column] += s->child_delta[right];
                    node[i] = s->child[right];
                }
            }
        }
    }
}
