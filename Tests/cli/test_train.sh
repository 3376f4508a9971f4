# tl-train at the command line. Sourced by Tests/cli/run.sh (helpers: expect, err_has, ok, bad).
# Data: the bundled sample, split 1600/400 (test_tensor.sh made $T/sample.tlt).
expect 0 "train help" -- tl-train --help
grep -q "^Usage: tl-train" "$T/out" && ok || bad "tl-train help text"
expect 0 "train version" -- tl-train --version
[ "$(cat "$T/out")" = "tl-train (tl) 0.1.0" ] && ok || bad "tl-train version line"
expect 0 "list archs" -- tl-train --list-archs
grep -q "^lenet5" "$T/out" && grep -q "^cnn-small" "$T/out" && ok || bad "--list-archs lists the built-ins"

tl-tensor split --ratio 0.8 --stratify --seed 1 -o "$T/ttr.tlt" -o "$T/tte.tlt" "$T/sample.tlt" -q
# A small network learns the sample well above chance (10%) in seconds, and reports per epoch.
expect 0 "train mlp" -- tl-train --arch mlp --epochs 3 --optimizer adam --val "$T/tte.tlt" --log "$T/log.csv" "$T/ttr.tlt" -o "$T/mlp.tlm"
grep -q "epoch 3/3" "$T/err" && ok || bad "per-epoch lines on stderr: $(head -c 300 "$T/err")"
python3 - "$T/log.csv" <<'PY' && ok || bad "log CSV: 3 epochs, validation accuracy above 60%: $(cat "$T/log.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["epoch"] for r in rows] == ["1", "2", "3"], rows
assert float(rows[-1]["val_acc"]) > 0.6, rows[-1]
assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
PY
tl-tensor info --json "$T/mlp.tlm" > "$T/info.json" && python3 - "$T/info.json" <<'PY' && ok || bad "model file: meta and weights"
import json, sys
d = json.load(open(sys.argv[1]))
m = d["meta"]
assert m["kind"] == "model" and m["arch"].startswith("fc256,relu"), m
assert m["input"]["shape"] == [1, 28, 28] and len(m["classes"]) == 10
assert m["train"]["seed"] == 0 and m["train"]["val_accuracy"] > 0.6 and "--epochs" in m["train"]["args"]
names = [t["name"] for t in d["tensors"]]
assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "fc3.weight", "fc3.bias"], names
assert d["tensors"][0]["shape"] == [256, 784]
PY

# Same seed and threads: the same bytes, to a file or through stdout; a resumed run too.
tl-train -q --arch lenet5 --epochs 2 --seed 5 --batch 32 "$T/ttr.tlt" -o "$T/a.tlm" \
  && tl-train -q --arch lenet5 --epochs 2 --seed 5 --batch 32 "$T/ttr.tlt" > "$T/b.tlm" && cmp -s "$T/a.tlm" "$T/b.tlm" && ok || bad "same seed, same model bytes"
tl-train -q --arch lenet5 --epochs 2 --seed 6 --batch 32 "$T/ttr.tlt" -o "$T/c.tlm" && ! cmp -s "$T/a.tlm" "$T/c.tlm" && ok || bad "another seed, another model"
tl-train -q --arch lenet5 --epochs 1 --seed 5 --batch 32 --checkpoint "$T/ck.tlm" "$T/ttr.tlt" -o /dev/null \
  && tl-train -q --arch lenet5 --epochs 2 --seed 5 --batch 32 --resume "$T/ck.tlm" "$T/ttr.tlt" -o "$T/r.tlm" \
  && cmp -s "$T/a.tlm" "$T/r.tlm" && ok || bad "resume from epoch 1 gives the uninterrupted run's bytes"
# Batches cut into shards (data parallelism, the default): the bits depend on the shard count,
# not on the thread count; one shard is another (equally valid) run.
# (The model files record the command line, so compare their weights: the .npy members of .npz.)
same_weights() {
  tl-tensor convert "$1" "$T/w1.npz" && tl-tensor convert "$2" "$T/w2.npz" && python3 - "$T/w1.npz" "$T/w2.npz" <<'PY'
import sys, zipfile
a, b = (zipfile.ZipFile(f) for f in sys.argv[1:])
names = [n for n in a.namelist() if n != "meta.json"]
assert len(names) == 10 and names == [n for n in b.namelist() if n != "meta.json"], names
sys.exit(0 if all(a.read(n) == b.read(n) for n in names) else 1)
PY
}
tl-train -q --arch lenet5 --epochs 2 --seed 5 --batch 32 --threads 1 "$T/ttr.tlt" -o "$T/a1.tlm" \
  && tl-train -q --arch lenet5 --epochs 2 --seed 5 --batch 32 --threads 2 --shards 2 "$T/ttr.tlt" -o "$T/a2.tlm" \
  && same_weights "$T/a.tlm" "$T/a1.tlm" && same_weights "$T/a.tlm" "$T/a2.tlm" && ok || bad "1 or 2 threads, default shards: the same weights"
tl-train -q --arch lenet5 --epochs 2 --seed 5 --batch 32 --shards 1 "$T/ttr.tlt" -o "$T/s1.tlm" && ! same_weights "$T/a.tlm" "$T/s1.tlm" \
  && ok || bad "--shards 1 trains on whole batches (other bits)"
expect 64 "shards with batch normalization" -- tl-train --arch "conv3x3-8,bn,relu,fc16,relu" --shards 2 --epochs 1 "$T/ttr.tlt" -o "$T/bad.tlm"
err_has "batch normalization" "shards and BatchNorm message"
expect 64 "shards 0" -- tl-train --arch mlp --shards 0 --epochs 1 "$T/ttr.tlt" -o "$T/bad.tlm"
err_has "shards" "--shards 0 message"
[ ! -e "$T/bad.tlm" ] && ok || bad "no model after a bad --shards"
# Dropout, BatchNorm, augmentation, a custom spec, a schedule: train, deterministically.
tl-train -q --arch "conv3x3-8,bn,relu,maxpool2,dropout0.3,fc32,relu" --augment crop,flip --schedule cosine --warmup 0.5 \
  --epochs 2 --seed 2 "$T/ttr.tlt" -o "$T/d1.tlm" && tl-train -q --arch "conv3x3-8,bn,relu,maxpool2,dropout0.3,fc32,relu" \
  --augment crop,flip --schedule cosine --warmup 0.5 --epochs 2 --seed 2 "$T/ttr.tlt" -o "$T/d2.tlm" && cmp -s "$T/d1.tlm" "$T/d2.tlm" \
  && ok || bad "spec with bn, dropout, augmentation trains reproducibly"
tl-tensor head -n 96 "$T/tte.tlt" -o "$T/t96.tlt"
expect 0 "resnet-small trains an epoch" -- tl-train -q --arch resnet-small --epochs 1 --batch 32 --val-split 0.5 --patience 1 "$T/t96.tlt" -o "$T/res.tlm"

# Bad input: one line, the documented code, no output file.
tl-tensor slice --names x "$T/ttr.tlt" -o "$T/nolabels.tlt"
expect 65 "no y record" -- tl-train --arch mlp "$T/nolabels.tlt" -o "$T/bad.tlm"
err_has "no 'y' record" "missing labels message"
[ ! -e "$T/bad.tlm" ] && ok || bad "no model after an error"
printf '0\n1\n2\n' > "$T/few.txt"
tl-tensor slice --names x,y "$T/ttr.tlt" | tl-tensor stack - "$T/few.txt" -o "$T/fewnames.tlt"
expect 65 "labels out of range for the class names" -- tl-train --arch mlp "$T/fewnames.tlt" -o "$T/bad.tlm"
err_has "out of range for 3 classes" "label range message"
expect 65 "images of the wrong shape for the architecture" -- tl-train --arch "conv3x3-8,maxpool2,maxpool2,maxpool2,maxpool2,maxpool2" "$T/ttr.tlt" -o "$T/bad.tlm"
err_has "kernel 2x2 is larger" "wrong shape message"
expect 64 "architecture ends in the wrong class count" -- tl-train --arch "fc64,relu,fc5" "$T/ttr.tlt" -o "$T/bad.tlm"
err_has "ends in fc5, but the data has 10 classes" "class count message"
expect 64 "unknown architecture token" -- tl-train --arch "conv3x3-8,frob" "$T/ttr.tlt" -o "$T/bad.tlm"
err_has "architecture token 'frob'" "unknown token message"
expect 65 "NaN loss" -- tl-train --arch mlp --lr 1e30 --epochs 2 --checkpoint "$T/nan.ckpt" "$T/ttr.tlt" -o "$T/bad.tlm"
err_has "the loss became" "NaN loss message"
[ ! -e "$T/bad.tlm" ] && ok || bad "no model after a diverged run"
expect 64 "bad optimizer" -- tl-train --optimizer rmsprop "$T/ttr.tlt" -o "$T/bad.tlm"
expect 66 "missing input" -- tl-train "$T/none.tlt" -o "$T/bad.tlm"
expect 64 "resume a finished run" -- tl-train -q --arch lenet5 --epochs 1 --seed 5 --batch 32 --resume "$T/ck.tlm" "$T/ttr.tlt" -o "$T/bad.tlm"
expect 74 "model to /dev/full" -- bash -c "tl-train -q --arch mlp --epochs 1 '$T/tte.tlt' > /dev/full"
# Malformed option values: usage errors (64) that name the option.
for bad in "--val-split 2" "--augment rotate" "--label-smoothing 1" "--class-weights 1,2" "--schedule warm" "--epochs 0" "--lr -1" "--batch x"; do
  expect 64 "tl-train $bad" -- tl-train $bad "$T/ttr.tlt" -o "$T/bad.tlm"
  err_has "$(echo "$bad" | cut -d' ' -f1)" "tl-train $bad names the option"
done
[ ! -e "$T/bad.tlm" ] && ok || bad "no model after usage errors"
expect 0 "balanced class weights" -- tl-train -q --arch mlp --epochs 1 --class-weights balanced --label-smoothing 0.1 "$T/tte.tlt" -o "$T/cw.tlm"
# Augmentation needs images: feature rows are refused; an MLP trains on them.
if python3 -c 'import numpy' 2>/dev/null; then
  tl-tensor slice --names y,names "$T/tte.tlt" -o "$T/yonly.tlt"
  python3 -c "import numpy as np; np.save('$T/feat.npy', np.random.default_rng(0).standard_normal((400, 16)).astype(np.float32))"
  tl-tensor stack x="$T/feat.npy" "$T/yonly.tlt" -o "$T/feat.tlt" && ok || bad "feature rows stream"
  expect 64 "augment on features" -- tl-train --augment flip --arch mlp "$T/feat.tlt" -o "$T/bad.tlm"
  err_has "--augment needs images" "augment on features message"
  expect 0 "mlp on feature rows" -- tl-train -q --arch mlp --epochs 1 "$T/feat.tlt" -o "$T/feat.tlm"
else skipped "feature-row training tests: python3 with numpy is not installed"; fi
