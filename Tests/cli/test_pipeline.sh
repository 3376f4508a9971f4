# The canonical pipeline at the command line: tl-tensor select, tl-extract, tl-train --linear,
# tl-eval. Sourced by Tests/cli/run.sh (helpers: expect, err_has, ok, bad, skipped).
P=$T/pipe; mkdir -p "$P"
tl-tensor stack "$SAMPLE/images-idx3-ubyte.gz" "$SAMPLE/labels-idx1-ubyte.gz" "$SAMPLE/classes.txt" -o "$P/all.tlt" -q
have_numpy=0; python3 -c 'import numpy' 2>/dev/null && have_numpy=1

for cmd in tl-extract tl-eval; do
  expect 0 "$cmd --help" -- $cmd --help
  grep -q "^Usage: $cmd" "$T/out" && ok || bad "$cmd help text"
  expect 0 "$cmd --version" -- $cmd --version
  [ "$(cat "$T/out")" = "$cmd (tl) 0.1.0" ] && ok || bad "$cmd version line"
done
expect 0 "select --help" -- tl-tensor select --help

# --- tl-tensor select: classes 5-9 relabeled 0-4, N per class.
expect 0 "select classes" -- tl-tensor select --classes 5-9 "$P/all.tlt" -o "$P/target.tlt"
tl-tensor select --classes 0-4 -q "$P/all.tlt" -o "$P/source.tlt"
expect 0 "select per class" -- tl-tensor select --classes Sandal,Shirt,7-9 --per-class 10 --seed 3 "$P/all.tlt" -o "$P/t10.tlt"
if [ $have_numpy = 1 ]; then
  tl-tensor convert "$P/all.tlt" "$P/all.npz" -q; tl-tensor convert "$P/t10.tlt" "$P/t10.npz" -q; tl-tensor convert "$P/target.tlt" "$P/target.npz" -q
  python3 - "$P" <<'PY' && ok || bad "select: rows, relabeling, names, per-class counts"
import numpy as np, sys
d = sys.argv[1]
a, t, s = np.load(d + "/all.npz"), np.load(d + "/t10.npz"), np.load(d + "/target.npz")
keep = a["y"] >= 5
assert (s["y"] == a["y"][keep] - 5).all() and (s["x"] == a["x"][keep]).all()
assert bytes(s["names"]).decode().split("\n") == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
assert sorted(np.bincount(t["y"]).tolist()) == [10] * 5 and len(t["y"]) == 50
# Each chosen row is a row of the input with the right class, in input order.
rows = [i for i in range(len(a["y"])) if any((a["x"][i] == t["x"][j]).all() for j in range(50))]
assert len(rows) == 50 and (a["y"][rows] - 5 == t["y"]).all()
PY
else skipped "select content checks: python3 with numpy is not installed"; fi
expect 64 "select an unknown class" -- tl-tensor select --classes 3,Hat "$P/all.tlt" -o "$P/bad.tlt"
err_has "'Hat' is neither" "unknown class message"
expect 64 "select a class twice" -- tl-tensor select --classes 1,1 "$P/all.tlt" -o "$P/bad.tlt"
expect 64 "select out of range" -- tl-tensor select --classes 4-12 "$P/all.tlt" -o "$P/bad.tlt"
err_has "class 10 does not exist" "range message"
[ ! -e "$P/bad.tlt" ] && ok || bad "no output after select errors"

# --- Pretrain on the source classes, then the canonical pipeline on the target classes.
tl-tensor split --count 700 --stratify --seed 1 -q -o "$P/ttr.tlt" -o "$P/tte.tlt" "$P/target.tlt"
NTE=$(tl-tensor info --json "$P/tte.tlt" | python3 -c "import json,sys; print([t for t in json.load(sys.stdin)['tensors'] if t['name'] == 'y'][0]['shape'][0])")
tl-train -q --arch lenet5 --epochs 4 --optimizer adam --lr 0.002 "$P/source.tlt" -o "$P/src.tlm" && ok || bad "pretrain source"
expect 0 "list layers" -- tl-extract --model "$P/src.tlm" --list-layers
grep -qE "^fc2 +fc84 +84 +default \(then relu4\)" "$T/out" && grep -qE "^conv2 +conv5x5-16-p0 +16x8x8" "$T/out" && ok || bad "--list-layers: $(cat "$T/out")"
# Through real pipes: extract | train --linear, extract | eval.
tl-tensor cat "$P/ttr.tlt" | tl-extract -q --model "$P/src.tlm" | tl-train -q --linear -o "$P/clf.tlm" && ok || bad "extract | train --linear"
cat "$P/tte.tlt" | tl-extract -q -m "$P/src.tlm" - | tl-eval -m "$P/clf.tlm" --json > "$P/report.json" && ok || bad "extract | eval"
tl-eval -m "$P/src.tlm" --json "$P/source.tlt" > /dev/null && ok || bad "eval a network on images"
if [ $have_numpy = 1 ]; then
  python3 - "$P/report.json" "$NTE" <<'PY' && ok || bad "report: fields, and the codes classify unseen target classes well above chance: $(head -c 300 "$P/report.json")"
import json, sys
r = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
assert r["count"] == n and r["classes"][0] == "Sandal", r
assert r["accuracy"] > 0.6, r["accuracy"]     # 5 classes: chance is 0.2
assert sum(sum(row) for row in r["confusion"]) == n
assert abs(r["correct"] - sum(r["confusion"][i][i] for i in range(5))) == 0
assert all(set(c) == {"class", "precision", "recall", "f1", "support"} for c in r["per_class"])
PY
fi
# The features stream: x of the layer before the classifier after its ReLU, y and names passed through.
tl-extract -q -m "$P/src.tlm" "$P/tte.tlt" -o "$P/f.tlt" && tl-tensor info --json "$P/f.tlt" > "$T/out"
python3 - "$T/out" "$NTE" <<'PY' && ok || bad "features stream: $(head -c 400 "$T/out")"
import json, sys
d = json.load(open(sys.argv[1]))
t = {x["name"]: x for x in d["tensors"]}
n = int(sys.argv[2])
assert t["x"]["shape"] == [n, 84] and t["x"]["dtype"] == "f32", t
assert t["y"]["shape"] == [n] and t["names"]["names"][0] == "Sandal"
m = d["meta"]
assert m["kind"] == "features" and m["layer"] == "fc2" and m["activation"] == "relu4" and m["features"] == [84], m
PY
# A file and a pipe give the same bytes; so do 1 and 2 threads and another batch size.
cat "$P/tte.tlt" | tl-extract -q -m "$P/src.tlm" > "$P/f2.tlt" && cmp -s "$P/f.tlt" "$P/f2.tlt" && ok || bad "file and pipe give the same features"
tl-extract -q -j 1 -b 7 -m "$P/src.tlm" "$P/tte.tlt" -o "$P/f3.tlt" && cmp -s "$P/f.tlt" "$P/f3.tlt" && ok || bad "threads and batch size do not change the features"
# Other layers, no activation, f16, NumPy output.
tl-extract -q -m "$P/src.tlm" --layer conv2 --dtype f16 "$P/tte.tlt" -o "$P/c2.tlt" && tl-tensor info --json "$P/c2.tlt" > "$T/out" \
  && grep -q "\"shape\":\[$NTE,16,8,8\]" "$T/out" && grep -q '"dtype":"f16"' "$T/out" && ok || bad "--layer conv2 --dtype f16: $(head -c 300 "$T/out")"
if [ $have_numpy = 1 ]; then
  tl-extract -q -m "$P/src.tlm" --layer fc2 --no-activation "$P/tte.tlt" -o "$P/pre.npz" && tl-tensor convert -q "$P/f.tlt" "$P/post.npz" \
    && python3 -c "
import numpy as np; a = np.load('$P/pre.npz')['x']; b = np.load('$P/post.npz')['x']
assert (a < 0).any() and (b >= 0).all() and np.array_equal(np.maximum(a, 0), b)" && ok || bad "--no-activation is the pre-ReLU output"
fi
# Pooled convolutional codes: the mean (or max) of each map.
if [ $have_numpy = 1 ]; then
  tl-extract -q -m "$P/src.tlm" --layer conv2 "$P/tte.tlt" -o "$P/maps.npz" && tl-extract -q -m "$P/src.tlm" --layer conv2 --pool avg "$P/tte.tlt" -o "$P/avg.npz" \
    && tl-extract -q -m "$P/src.tlm" --layer conv2 --pool max "$P/tte.tlt" -o "$P/max.npz" && python3 -c "
import numpy as np; m = np.load('$P/maps.npz')['x']; a = np.load('$P/avg.npz')['x']; b = np.load('$P/max.npz')['x']
assert m.shape[1:] == (16, 8, 8) and a.shape == (m.shape[0], 16) and np.allclose(a, m.mean((2, 3)), atol=1e-6) and np.array_equal(b, m.max((2, 3)))" \
    && ok || bad "--pool avg and max over conv2's maps"
fi
expect 64 "--pool of a vector layer" -- tl-extract -m "$P/src.tlm" --pool avg "$P/tte.tlt" -o "$P/bad.tlt"
err_has "--pool needs [C, H, W] codes" "pool message"
expect 64 "--pool sum" -- tl-extract -m "$P/src.tlm" --layer conv2 --pool sum "$P/tte.tlt" -o "$P/bad.tlt"
# A directory of PGM images of mixed sizes: resized to the model's 28x28, in name order.
mkdir -p "$P/imgs"
tl-tensor head -n 3 -q "$P/tte.tlt" | tl-tensor convert - "$P/imgs/a%d.pgm" -q
python3 - "$P/imgs" <<'PY' && ok || bad "write a 40x40 PGM"
import sys
open(sys.argv[1] + "/b.pgm", "wb").write(b"P5\n40 40\n255\n" + bytes((i * 7) % 256 for i in range(1600)))
PY
expect 0 "extract a directory of mixed-size images" -- tl-extract -q -m "$P/src.tlm" "$P/imgs" -o "$P/imgs.tlt"
tl-tensor info --json "$P/imgs.tlt" | grep -q '"shape":\[4,84\]' && ok || bad "4 images, 84 features each"
if [ $have_numpy = 1 ]; then
  tl-tensor convert -q "$P/imgs.tlt" "$P/imgs.npz" && python3 -c "
import numpy as np; a = np.load('$P/imgs.npz')['x']; b = np.load('$P/post.npz')['x']
assert np.array_equal(a[:3], b[:3]) and not np.array_equal(a[3], b[3])" && ok || bad "PGM files give the features their stream gives"
fi
expect 0 "extract a list of image files" -- tl-extract -q -m "$P/src.tlm" "$P/imgs/b.pgm" "$P/imgs/a0.pgm" -o "$P/list.tlt"

# --- tl-eval on predictions: --predict, then eval the predictions stream; a hand-made one.
tl-extract -q -m "$P/src.tlm" "$P/tte.tlt" | tl-eval -q -m "$P/clf.tlm" --predict -o "$P/pred.tlt" && ok || bad "--predict"
tl-tensor info --json "$P/pred.tlt" | python3 -c "
import json, sys; t = {x['name']: x for x in json.load(sys.stdin)['tensors']}
assert t['pred']['shape'] == [$NTE] and t['prob']['shape'] == [$NTE, 5] and t['y']['shape'] == [$NTE]" && ok || bad "pred, prob, y records"
tl-eval --json "$P/pred.tlt" > "$P/r2.json" && cmp -s "$P/r2.json" "$P/report.json" && ok || bad "eval of the predictions equals eval with the model"
if [ $have_numpy = 1 ]; then
  python3 - "$P" <<'PY' && ok || bad "hand-computed metrics: $(cat "$P/hand.txt" "$T/err")"
import numpy as np, sys
d = sys.argv[1]
np.save(d + "/y.npy", np.array([0,0,0,0,1,1,1,2,2,2], np.int64)); np.save(d + "/p.npy", np.array([0,0,1,2,1,1,0,2,2,1], np.int64))
PY
  tl-tensor stack y="$P/y.npy" pred="$P/p.npy" -q | tl-eval > "$P/hand.txt" && grep -q "^accuracy  60.00%  (6/10)" "$P/hand.txt" \
    && grep -q "^macro-F1  0.6032" "$P/hand.txt" && grep -qE "^0 0 +0.6667 +0.5000 +0.5714 +4$" "$P/hand.txt" && grep -qE "^1 1 +1 +2 +0$" "$P/hand.txt" && ok || bad "hand-computed report: $(cat "$P/hand.txt")"
fi

# --- Linear classifier options.
tl-extract -q -m "$P/src.tlm" "$P/ttr.tlt" -o "$P/ftr.tlt"
expect 0 "linear svm, standardized, with validation" -- tl-train --linear --loss svm --standardize --val "$P/f.tlt" "$P/ftr.tlt" -o "$P/svm.tlm"
err_has "validation accuracy" "validation note"
grep -q "converged" "$T/err" && ok || bad "convergence note: $(cat "$T/err")"
tl-tensor info --json "$P/svm.tlm" | python3 -c "
import json, sys; d = json.load(sys.stdin); l = d['meta']['train']['linear']
assert l['loss'] == 'svm' and l['standardize'] and l['cost'] == 1 and l['converged'], l
assert len(d['meta']['input']['mean']) == 84 and [t['name'] for t in d['tensors']] == ['fc1.weight', 'fc1.bias']" && ok || bad "linear model file"
tl-eval -q -m "$P/svm.tlm" --predict "$P/f.tlt" -o "$P/svmpred.tlt" && tl-tensor info "$P/svmpred.tlt" | grep -q "score" && ok || bad "an SVM predicts scores, not probabilities"
tl-train -q --linear --cost 0.1 "$P/ftr.tlt" -o "$P/l1.tlm" && tl-train -q --linear --cost 0.1 "$P/ftr.tlt" -o "$P/l2.tlm" && cmp -s "$P/l1.tlm" "$P/l2.tlm" \
  && ok || bad "the same linear fit twice gives the same bytes"
expect 0 "minibatch solver on a file" -- tl-train --linear --solver minibatch --standardize --epochs 3 --class-weights balanced "$P/ftr.tlt" -o "$P/mb.tlm"
tl-eval -m "$P/mb.tlm" --json "$P/f.tlt" | python3 -c "import json,sys; assert json.load(sys.stdin)['accuracy'] > 0.5" && ok || bad "minibatch model classifies"
expect 0 "linear on raw images" -- tl-train -q --linear --max-iter 50 "$P/ttr.tlt" -o "$P/pix.tlm"

# --- Bad input: one line, the documented code, no partial output.
expect 64 "extract without --model" -- tl-extract "$P/tte.tlt" -o "$P/bad.tlt"
expect 66 "extract with a missing model" -- tl-extract -m "$P/none.tlm" "$P/tte.tlt" -o "$P/bad.tlt"
expect 64 "extract an unknown layer" -- tl-extract -m "$P/src.tlm" --layer fc9 "$P/tte.tlt" -o "$P/bad.tlt"
err_has "no layer 'fc9'" "unknown layer message"
expect 64 "extract a bad dtype" -- tl-extract -m "$P/src.tlm" --dtype f64 "$P/tte.tlt" -o "$P/bad.tlt"
expect 65 "extract from a stream without x" -- bash -c "tl-tensor slice --names y,names '$P/tte.tlt' | tl-extract -m '$P/src.tlm' -o '$P/bad.tlt'"
err_has "no 'x' record" "missing x message"
expect 65 "extract features with an image network" -- bash -c "tl-tensor head -n 4 -q '$P/ftr.tlt' | tl-extract -m '$P/src.tlm' -o '$P/bad.tlt'"
err_has "84 per sample" "wrong input shape message"
expect 65 "extract with a damaged model" -- bash -c "head -c 2000 '$P/src.tlm' > '$P/cut.tlm'; tl-extract -m '$P/cut.tlm' '$P/tte.tlt' -o '$P/bad.tlt'"
expect 74 "features to /dev/full" -- bash -c "tl-extract -m '$P/src.tlm' '$P/tte.tlt' > /dev/full"
[ ! -e "$P/bad.tlt" ] && ok || bad "no output file after extract errors"
# Four copies of the input: more output than a pipe holds (tl grows pipes to 1 MiB), so the
# writer is still writing when head leaves.
tl-tensor cat -q "$P/all.tlt" "$P/all.tlt" "$P/all.tlt" "$P/all.tlt" -o "$P/all4.tlt"
tl-extract -q -m "$P/src.tlm" "$P/all4.tlt" 2>"$T/err" | head -c 1000 > /dev/null
st=${PIPESTATUS[0]}
[ "$st" = 141 ] && [ ! -s "$T/err" ] && ok || bad "extract | head ends quietly (status $st, stderr $(head -c 200 "$T/err"))"
expect 64 "eval --predict without a model" -- tl-eval --predict "$P/pred.tlt" -o "$P/bad.tlt"
expect 65 "eval without predictions or model" -- tl-eval "$P/tte.tlt"
err_has "no predictions" "no predictions message"
expect 65 "eval labels that do not match the predictions" -- bash -c "tl-tensor stack y='$P/y.npy' pred=<(tl-tensor slice --rows :9 '$P/p.npy' --to npy -o -) | tl-eval"
expect 65 "eval with labels beyond the model's classes" -- tl-eval -m "$P/src.tlm" "$P/all.tlt"
err_has "out of range" "label range message"
expect 64 "--loss for from-scratch training" -- tl-train --loss svm "$P/ttr.tlt" -o "$P/bad.tlm"
err_has "--loss is for --linear" "linear-only option message"
expect 64 "--arch with --linear" -- tl-train --linear --arch mlp "$P/ftr.tlt" -o "$P/bad.tlm"
expect 64 "bad --loss" -- tl-train --linear --loss hinge "$P/ftr.tlt" -o "$P/bad.tlm"
expect 64 "--cost 0" -- tl-train --linear --cost 0 "$P/ftr.tlt" -o "$P/bad.tlm"
expect 64 "--cost and --l2" -- tl-train --linear --cost 1 --l2 0.1 "$P/ftr.tlt" -o "$P/bad.tlm"
expect 64 "minibatch from a pipe" -- bash -c "cat '$P/ftr.tlt' | tl-train --linear --solver minibatch -o '$P/bad.tlm'"
err_has "give a file, not a pipe" "minibatch pipe message"
expect 65 "linear on features without labels" -- bash -c "tl-tensor slice --names x '$P/ftr.tlt' | tl-train --linear -o '$P/bad.tlm'"
expect 65 "linear with NaN features" -- bash -c "python3 -c \"import numpy as np; x = np.ones((20, 3), np.float32); x[3, 1] = np.nan; np.save('$P/nan.npy', x); np.save('$P/ny.npy', np.arange(20) % 2)\" && tl-tensor stack x='$P/nan.npy' y='$P/ny.npy' | tl-train --linear -o '$P/bad.tlm'"
[ ! -e "$P/bad.tlm" ] && ok || bad "no model after linear errors"
