/* The reasons' jsonb (scorer.model.reasons, which documents the format): per row, the k inputs
 * of largest absolute contribution, largest first, as one binary COPY field. Plain C with no
 * Python headers: loaded with ctypes. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Exact in a double up to 10^22. */
static const double POW10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,
                               1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13};

/* v as printf's %.9g writes it, at p (26 bytes free); returns its length. The usual case, a
 * number from 1e-4 to 1e8 whose tenth significant digit and on are not within 1e-6 of a half,
 * is written from its 9 digits as an integer: v * 10^k (k <= 13) is rounded once, by at most
 * 6e-8 in the 9-digit scale, so such a number rounds as exactly as printf rounds it. Every
 * other number (a near tie, zero, the tiny, the huge, NaN) is printf's. */
static int format_9g(double v, char *p) {
    double a = fabs(v);
    if (a >= 1e-4 && a < 1e8) {
        int e = (int)floor(log10(a)); /* may be one off: set right below */
        double x = a * POW10[8 - e];
        if (x >= 1e9) x = a * POW10[8 - ++e];
        else if (x < 1e8) x = a * POW10[8 - --e];
        double whole = floor(x), fraction = x - whole;
        if (fabs(fraction - 0.5) > 1e-6 && x >= 1e8 && x < 1e9 && e >= -4) {
            uint64_t m = (uint64_t)whole + (fraction > 0.5);
            if (m == 1000000000u) m = 100000000u, e++;
            char digits[9], *q = p;
            for (int i = 8; i >= 0; i--, m /= 10) digits[i] = (char)('0' + m % 10);
            int last = 8; /* the last digit kept: trailing zeros after the point go */
            int point = e >= 0 ? e : -1; /* the digit the point follows, or before the first */
            while (last > point && digits[last] == '0') last--;
            if (v < 0) *q++ = '-';
            if (e < 0) {
                *q++ = '0';
                *q++ = '.';
                for (int i = -1; i > e; i--) *q++ = '0';
            }
            for (int i = 0; i <= last; i++) {
                *q++ = digits[i];
                if (i == point && i < last) *q++ = '.';
            }
            return (int)(q - p);
        }
    }
    return snprintf(p, 26, "%.9g", v);
}

/* Per row of `contributions` (rows x width, row-major; its first `inputs` columns), one field
 * at out: its length (4 bytes, big-endian), then jsonb version 1 and
 * [["name",contribution],...] with each contribution as %.9g; ties go to the earlier input.
 * `names` holds each input's JSON string, the i-th from name_start[i] to name_start[i + 1].
 * Writes each row's end in out to ends and returns the bytes written, or -1 if out of memory.
 * out must hold rows * (7 + k * (longest name + 29)) bytes. */
int64_t scorer_reasons(const double *contributions, int64_t rows, int64_t width, int64_t inputs,
                       int64_t k, const char *names, const int64_t *name_start, char *out,
                       int64_t *ends) {
    int64_t *chosen = malloc((size_t)(k > 0 ? k : 1) * sizeof *chosen);
    double *magnitude = malloc((size_t)(k > 0 ? k : 1) * sizeof *magnitude);
    if (!chosen || !magnitude) {
        free(chosen);
        free(magnitude);
        return -1;
    }
    char *p = out;
    for (int64_t r = 0; r < rows; r++) {
        const double *row = contributions + r * width;
        int64_t count = 0;
        for (int64_t c = 0; c < inputs; c++) {
            double m = fabs(row[c]);
            if (count == k && (k == 0 || !(m > magnitude[k - 1]))) continue;
            int64_t at = count < k ? count++ : k - 1;
            for (; at > 0 && m > magnitude[at - 1]; at--) {
                chosen[at] = chosen[at - 1];
                magnitude[at] = magnitude[at - 1];
            }
            chosen[at] = c;
            magnitude[at] = m;
        }
        char *field = p;
        p += 4;
        *p++ = '\x01';
        *p++ = '[';
        for (int64_t j = 0; j < count; j++) {
            int64_t c = chosen[j];
            int64_t size = name_start[c + 1] - name_start[c];
            if (j) *p++ = ',';
            *p++ = '[';
            memcpy(p, names + name_start[c], (size_t)size);
            p += size;
            *p++ = ',';
            p += format_9g(row[c], p);
            *p++ = ']';
        }
        *p++ = ']';
        uint32_t length = (uint32_t)(p - field - 4);
        field[0] = (char)(length >> 24);
        field[1] = (char)(length >> 16);
        field[2] = (char)(length >> 8);
        field[3] = (char)length;
        ends[r] = p - out;
    }
    free(chosen);
    free(magnitude);
    return p - out;
}
