/* One more field on each row of a binary COPY stream (scorer.postgres.wire). Plain C with no
 * Python headers: loaded with ctypes. */
#include <stdint.h>
#include <string.h>

/* Into out, each row of `rows` (row r ends at row_ends[r]) followed by its field of `fields`
 * (ends at field_ends[r]), the row's field count (its first two bytes, big-endian) set to
 * `count`. */
void scorer_append_field(const uint8_t *rows, const int64_t *row_ends, const uint8_t *fields,
                         const int64_t *field_ends, int64_t n, int64_t count, uint8_t *out) {
    int64_t row_start = 0, field_start = 0;
    for (int64_t r = 0; r < n; r++) {
        int64_t row_size = row_ends[r] - row_start, field_size = field_ends[r] - field_start;
        memcpy(out, rows + row_start, (size_t)row_size);
        out[0] = (uint8_t)(count >> 8);
        out[1] = (uint8_t)count;
        memcpy(out + row_size, fields + field_start, (size_t)field_size);
        out += row_size + field_size;
        row_start = row_ends[r];
        field_start = field_ends[r];
    }
}
