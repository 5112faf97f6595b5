/* One compiled walk over every tree of a flat forest (see recsys/models/rankers/forest.py).
 *
 * walk(X, x_bytes, n_rows, n_features, column_major, feature, threshold, left, missing_left, value, roots, out)
 *
 *   X            float64 (x_bytes 8) or float32 (x_bytes 4, each value read exactly as a double: the
 *                same comparisons as on its float64 copy) [n_rows, n_features], C order, NaN = missing;
 *                with column_major = 1 the same
 *                matrix stored column by column ([n_features, n_rows] in C order, a Fortran-ordered
 *                array's transpose): the serving matrix comes that way and is walked without a copy
 *   feature      int32   [nodes]  feature index of a split (0 at a leaf)
 *   threshold    float64 [nodes]  split threshold, x <= threshold goes left (+inf at a leaf)
 *   left         int32   [nodes]  left child; the right child is left + 1; a leaf holds its own index
 *   missing_left uint8   [nodes]  where NaN goes: 1 left, 0 right (1 at a leaf)
 *   value        float64 [nodes]  leaf value
 *   roots        int32   [trees]  root node of each tree
 *   out          float64 [n_rows, trees], written: the leaf value each row reaches in each tree
 *
 * The rule at a node is scikit-learn's (HistGradientBoosting's predictor): NaN goes where
 * missing_left says, otherwise x <= threshold goes left. A leaf loops onto itself, so a block of
 * rows steps together until none moves; several rows in flight hide the latency of each step.
 * Rows go in tiles of about TILE_BYTES of X, each tile through every tree before the next: a tile
 * stays in cache while the trees read it (walking every row through one tree, then the next tree,
 * read each large batch from memory once per tree: 3-4x slower at 32k rows of 117 features).
 * The caller (CompiledForest) checks shapes, dtypes and that every index is in range; this file
 * checks the buffer sizes against the counts it is given.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define BLOCK 8
#define TILE_BYTES (128 * 1024)

/* One tile of rows through every tree; T is the element type of X (double, or float read exactly as double). */
#define WALK_TILE(NAME, T)                                                                                        \
    static void NAME(const T *X, Py_ssize_t n_rows, Py_ssize_t rs, Py_ssize_t cs, const int32_t *feature,        \
                     const double *threshold, const int32_t *left, const uint8_t *missing_left,                  \
                     const double *value, const int32_t *roots, Py_ssize_t n_trees, double *out)                 \
    {                                                                                                             \
        for (Py_ssize_t t = 0; t < n_trees; t++) {                                                                \
            const int32_t root = roots[t];                                                                        \
            for (Py_ssize_t i0 = 0; i0 < n_rows; i0 += BLOCK) {                                                   \
                const int m = (int)(n_rows - i0 < BLOCK ? n_rows - i0 : BLOCK);                                   \
                const T *rows = X + i0 * rs;                                                                      \
                int32_t node[BLOCK];                                                                              \
                for (int j = 0; j < m; j++)                                                                       \
                    node[j] = root;                                                                               \
                for (;;) {                                                                                        \
                    int moved = 0;                                                                                \
                    for (int j = 0; j < m; j++) {                                                                 \
                        const int32_t n = node[j];                                                                \
                        const double x = (double)rows[j * rs + feature[n] * cs];                                  \
                        const int go_right = (x > threshold[n]) | ((x != x) & (missing_left[n] ^ 1));             \
                        const int32_t next = left[n] + go_right;                                                  \
                        moved |= next != n;                                                                       \
                        node[j] = next;                                                                           \
                    }                                                                                             \
                    if (!moved)                                                                                   \
                        break;                                                                                    \
                }                                                                                                 \
                for (int j = 0; j < m; j++)                                                                       \
                    out[(i0 + j) * n_trees + t] = value[node[j]];                                                 \
            }                                                                                                     \
        }                                                                                                         \
    }

WALK_TILE(walk_tile_f64, double)
WALK_TILE(walk_tile_f32, float)

static void walk_all(const void *X, int x_bytes, Py_ssize_t n_rows, Py_ssize_t n_features, int column_major,
                     const int32_t *feature, const double *threshold, const int32_t *left,
                     const uint8_t *missing_left, const double *value, const int32_t *roots, Py_ssize_t n_trees,
                     double *out)
{
    Py_ssize_t tile = TILE_BYTES / (n_features * (Py_ssize_t)x_bytes);
    tile = tile < BLOCK ? BLOCK : tile - tile % BLOCK;
    const Py_ssize_t rs = column_major ? 1 : n_features, cs = column_major ? n_rows : 1;
    for (Py_ssize_t r0 = 0; r0 < n_rows; r0 += tile) {
        const Py_ssize_t m = n_rows - r0 < tile ? n_rows - r0 : tile;
        if (x_bytes == 4)
            walk_tile_f32((const float *)X + r0 * rs, m, rs, cs, feature, threshold, left, missing_left, value,
                          roots, n_trees, out + r0 * n_trees);
        else
            walk_tile_f64((const double *)X + r0 * rs, m, rs, cs, feature, threshold, left, missing_left, value,
                          roots, n_trees, out + r0 * n_trees);
    }
}

static int check(const Py_buffer *b, Py_ssize_t count, Py_ssize_t item, const char *name)
{
    if (b->len != count * item) {
        PyErr_Format(PyExc_ValueError, "_walk.walk: %s holds %zd bytes, expected %zd (%zd x %zd)", name, b->len,
                     count * item, count, item);
        return 0;
    }
    return 1;
}

static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer X, feature, threshold, left, missing_left, value, roots, out;
    Py_ssize_t n_rows, n_features;
    int column_major, x_bytes;
    if (!PyArg_ParseTuple(args, "y*innpy*y*y*y*y*y*w*", &X, &x_bytes, &n_rows, &n_features, &column_major, &feature,
                          &threshold, &left, &missing_left, &value, &roots, &out))
        return NULL;
    const Py_ssize_t nodes = feature.len / 4, n_trees = roots.len / 4;
    PyObject *result = NULL;
    if ((x_bytes == 4 || x_bytes == 8) && n_rows >= 0 && n_features > 0 && check(&X, n_rows * n_features, x_bytes, "X") && check(&feature, nodes, 4, "feature") &&
        check(&threshold, nodes, 8, "threshold") && check(&left, nodes, 4, "left") &&
        check(&missing_left, nodes, 1, "missing_left") && check(&value, nodes, 8, "value") &&
        check(&roots, n_trees, 4, "roots") && check(&out, n_rows * n_trees, 8, "out")) {
        Py_BEGIN_ALLOW_THREADS
        walk_all(X.buf, x_bytes, n_rows, n_features, column_major, (const int32_t *)feature.buf,
                 (const double *)threshold.buf, (const int32_t *)left.buf, (const uint8_t *)missing_left.buf,
                 (const double *)value.buf, (const int32_t *)roots.buf, n_trees, (double *)out.buf);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    } else if (!PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "_walk.walk: x_bytes must be 4 or 8, n_rows >= 0 and n_features > 0");
    }
    PyBuffer_Release(&X);
    PyBuffer_Release(&feature);
    PyBuffer_Release(&threshold);
    PyBuffer_Release(&left);
    PyBuffer_Release(&missing_left);
    PyBuffer_Release(&value);
    PyBuffer_Release(&roots);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"walk", walk, METH_VARARGS, "Leaf value of every row in every tree of a flat forest (see the C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_walk", "Compiled tree walk for CompiledForest.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__walk(void) { return PyModule_Create(&module); }
