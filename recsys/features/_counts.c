/* Point-in-time event counts for one query time, in one call (see EventIndex.count_windows in
 * recsys/features/event_index.py, whose NumPy path this equals value for value).
 *
 * count(sorted, code_lo, code_hi, stride, uniq_times, codes, t, windows, out)
 *
 *   sorted      int64 [events]  code * stride + rank of the event's time among uniq_times, ascending
 *   code_lo/hi  int64           every code lies in [code_lo, code_hi): only that block of sorted is searched
 *                               (code_lo = code_hi = -1: the whole array)
 *   stride      int64           len(uniq_times) + 1
 *   uniq_times  int64 [times]   the index's distinct event times, ascending
 *   codes       int64 [n]       query keys (compressed codes)
 *   t           int64           the query time (events strictly before it count)
 *   windows     int64 [W]       window lengths; -1 = no lower bound (all history)
 *   out         int64 [W, n]    written: events of codes[i] in [t - windows[w], t)
 *
 * Every bound is a lower bound (numpy.searchsorted's side="left"), as in the NumPy path. The caller
 * checks dtypes and contiguity; this file checks buffer sizes against the counts it is given.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

static Py_ssize_t lower_bound(const int64_t *a, Py_ssize_t n, int64_t x)
{
    Py_ssize_t lo = 0, hi = n;
    while (lo < hi) {
        const Py_ssize_t mid = lo + ((hi - lo) >> 1);
        if (a[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static void count_all(const int64_t *sorted, Py_ssize_t n_events, int64_t code_lo, int64_t code_hi, int64_t stride,
                      const int64_t *uniq_times, Py_ssize_t n_times, const int64_t *codes, Py_ssize_t n, int64_t t,
                      const int64_t *windows, Py_ssize_t n_windows, int64_t *out)
{
    const int64_t *events = sorted;
    Py_ssize_t m = n_events;
    if (code_lo >= 0) {
        const Py_ssize_t a = lower_bound(sorted, n_events, code_lo * stride);
        const Py_ssize_t b = lower_bound(sorted, n_events, code_hi * stride);
        events = sorted + a;
        m = b - a;
    }
    const int64_t upper = (int64_t)lower_bound(uniq_times, n_times, t);
    int64_t lower[64];
    for (Py_ssize_t w = 0; w < n_windows; w++)
        lower[w] = windows[w] < 0 ? 0 : (int64_t)lower_bound(uniq_times, n_times, t - windows[w]);
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t base = codes[i] * stride;
        const Py_ssize_t hi = m ? lower_bound(events, m, base + upper) : 0;
        for (Py_ssize_t w = 0; w < n_windows; w++)
            out[w * n + i] = m ? (int64_t)(hi - lower_bound(events, m, base + lower[w])) : 0;
    }
}

static int check(const Py_buffer *b, Py_ssize_t count, const char *name)
{
    if (b->len != count * 8) {
        PyErr_Format(PyExc_ValueError, "_counts.count: %s holds %zd bytes, expected %zd (%zd int64)", name, b->len,
                     count * 8, count);
        return 0;
    }
    return 1;
}

static PyObject *count(PyObject *self, PyObject *args)
{
    Py_buffer sorted, uniq_times, codes, windows, out;
    long long code_lo, code_hi, stride, t;
    if (!PyArg_ParseTuple(args, "y*LLLy*y*Ly*w*", &sorted, &code_lo, &code_hi, &stride, &uniq_times, &codes, &t,
                          &windows, &out))
        return NULL;
    const Py_ssize_t n_events = sorted.len / 8, n_times = uniq_times.len / 8, n = codes.len / 8,
                     n_windows = windows.len / 8;
    PyObject *result = NULL;
    if (n_windows > 64 || stride < 1 || (code_lo >= 0) != (code_hi >= 0) || code_hi < code_lo) {
        PyErr_SetString(PyExc_ValueError, "_counts.count: at most 64 windows, stride >= 1 and 0 <= code_lo <= code_hi "
                                          "(or both -1)");
    } else if (check(&sorted, n_events, "sorted") && check(&uniq_times, n_times, "uniq_times") &&
               check(&codes, n, "codes") && check(&windows, n_windows, "windows") &&
               check(&out, n_windows * n, "out")) {
        Py_BEGIN_ALLOW_THREADS
        count_all((const int64_t *)sorted.buf, n_events, code_lo, code_hi, stride, (const int64_t *)uniq_times.buf,
                  n_times, (const int64_t *)codes.buf, n, t, (const int64_t *)windows.buf, n_windows,
                  (int64_t *)out.buf);
        Py_END_ALLOW_THREADS
        result = Py_None;
        Py_INCREF(result);
    }
    PyBuffer_Release(&sorted);
    PyBuffer_Release(&uniq_times);
    PyBuffer_Release(&codes);
    PyBuffer_Release(&windows);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"count", count, METH_VARARGS, "Events per code in each window before one time (see the C source)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_counts", "Compiled point-in-time counts for EventIndex.",
                                    -1, methods};

PyMODINIT_FUNC PyInit__counts(void) { return PyModule_Create(&module); }
