"""Peers for the pipeline bench (issue 5), run with the python3 that has them from PyPI.

  peers_pipeline.py sklearn TRAIN.npz TEST.npz C
      scikit-learn LogisticRegression(C, lbfgs) on the same features; prints
      "sklearn<TAB>seconds<TAB>iterations<TAB>test accuracy<TAB>objective" (the objective in tl's
      scaling: mean loss + 1/(2 C n) |W|^2, computed in float64).
  peers_pipeline.py ortrand MODEL.onnx BATCH C H W
      the same on random inputs of that shape.
  peers_pipeline.py ort MODEL.onnx IMAGES.npz BATCH
      onnxruntime, 2 intra-op threads, on the images (raw pixel values as float32, which is
      what tl's exported model takes); prints "ort<TAB>images per second".
"""
import sys, time
import numpy as np

what = sys.argv[1]
if what == "sklearn":
    from sklearn.linear_model import LogisticRegression
    from scipy.special import logsumexp
    tr, te, C = np.load(sys.argv[2]), np.load(sys.argv[3]), float(sys.argv[4])
    X, y = tr["x"], tr["y"].astype(np.int64)
    t = time.perf_counter()
    m = LogisticRegression(C=C, max_iter=10000).fit(X, y)
    dt = time.perf_counter() - t
    acc = (m.predict(te["x"]) == te["y"]).mean()
    Z = X.astype(np.float64) @ m.coef_.T + m.intercept_
    n = len(y)
    f = (logsumexp(Z, axis=1) - Z[np.arange(n), y]).mean() + 0.5 / (C * n) * (m.coef_ ** 2).sum()
    print(f"sklearn\t{dt:.2f}\t{int(m.n_iter_[0])}\t{acc:.4f}\t{f:.7f}")
elif what in ("ort", "ortrand"):
    import onnxruntime as ort
    if what == "ort":
        model, images, batch = sys.argv[2], sys.argv[3], int(sys.argv[4])
        x = np.load(images)["x"].astype(np.float32)
        if x.ndim == 3: x = x[:, None]
    else:
        model, batch = sys.argv[2], int(sys.argv[3])
        c, hh, ww = map(int, sys.argv[4:7])
        x = np.random.default_rng(0).random((max(8 * batch, 64), c, hh, ww), dtype=np.float32)
    o = ort.SessionOptions(); o.intra_op_num_threads = 2; o.inter_op_num_threads = 1
    s = ort.InferenceSession(model, o, providers=["CPUExecutionProvider"])
    name = s.get_inputs()[0].name
    for i in range(0, min(len(x), 20 * batch), batch): s.run(None, {name: x[i:i + batch]})   # warm-up
    best = 0
    for _ in range(3):
        t = time.perf_counter()
        for i in range(0, len(x) - batch + 1, batch): s.run(None, {name: x[i:i + batch]})
        best = max(best, (len(x) // batch * batch) / (time.perf_counter() - t))
    print(f"ort\t{best:.0f}")
