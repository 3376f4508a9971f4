# Fine-tuning, conservative training, multitask and progressive networks at the command line.
# Sourced by Tests/cli/run.sh (helpers: expect, err_has, ok, bad). Data: the bundled sample split
# by test_train.sh ($T/ttr.tlt, $T/tte.tlt); source = classes 0-4, target = classes 5-9.
F=$T/ft; mkdir -p "$F"
tl-tensor select -q --classes 0-4 "$T/ttr.tlt" -o "$F/src.tlt"
tl-tensor select -q --classes 0-4 "$T/tte.tlt" -o "$F/src-test.tlt"
tl-tensor select -q --classes 5-9 --per-class 20 --seed 1 "$T/ttr.tlt" -o "$F/tgt.tlt"
tl-tensor select -q --classes 5-9 "$T/tte.tlt" -o "$F/tgt-test.tlt"
expect 0 "source network" -- tl-train -q --arch lenet5 --epochs 3 --optimizer adam --lr 0.002 "$F/src.tlt" -o "$F/src.tlm"
acc() { tl-eval "$@" | head -1; }
srcacc=$(acc -m "$F/src.tlm" "$F/src-test.tlt")

# Layer transfer: a new classifier for the target's classes, the rest the source's.
expect 0 "fine-tune all" -- tl-train --init "$F/src.tlm" --epochs 2 --seed 3 "$F/tgt.tlt" -o "$F/all.tlm"
grep -q "copied conv1, conv2, fc1, fc2; new fc3" "$T/err" && ok || bad "fine-tuning note names copied and new layers: $(head -c 300 "$T/err")"
tl-tensor info --json "$F/all.tlm" | python3 -c '
import json, sys
m = json.load(sys.stdin)["meta"]
assert m["classes"] == ["Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"], m["classes"]
f = m["train"]["fine_tuning"]
assert f["mode"] == "transfer" and f["copied"] == ["conv1", "conv2", "fc1", "fc2"] and f["frozen"] == [], f
' && ok || bad "fine-tuned model: target classes, fine_tuning metadata"
tl-train -q --init "$F/src.tlm" --epochs 2 --seed 3 "$F/tgt.tlt" -o "$F/all2.tlm" && cmp -s "$F/all.tlm" "$F/all2.tlm" && ok || bad "fine-tuning: same seed, same bytes"

# Frozen layers stay the source's, bit for bit; the rest learns.
same() { tl-tensor slice -q --names "$1" "$2" -o "$F/a.npy" && tl-tensor slice -q --names "$1" "$3" -o "$F/b.npy" && cmp -s "$F/a.npy" "$F/b.npy"; }
expect 0 "freeze early layers" -- tl-train -q --init "$F/src.tlm" --freeze conv1..pool2 --lr-copied 0.5 --epochs 2 "$F/tgt.tlt" -o "$F/frz.tlm"
same conv1.weight "$F/src.tlm" "$F/frz.tlm" && same conv2.bias "$F/src.tlm" "$F/frz.tlm" && ok || bad "--freeze: conv1, conv2 unchanged"
! same fc1.weight "$F/src.tlm" "$F/frz.tlm" && ok || bad "--freeze: fc1 learned"
# Copy the convolutions only, freeze through fc1: conv2 is the source's, fc1 a new layer.
expect 0 "copy only the convolutions" -- tl-train -q --init "$F/src.tlm" --copy conv1,conv2 --freeze ..fc1 --epochs 1 "$F/tgt.tlt" -o "$F/cp.tlm"
same conv2.weight "$F/src.tlm" "$F/cp.tlm" && ! same fc1.weight "$F/src.tlm" "$F/cp.tlm" && ok || bad "--copy conv1,conv2: conv2 copied, fc1 re-initialized"
expect 0 "gradual unfreezing" -- tl-train --init "$F/src.tlm" --unfreeze-every 1 --epochs 2 "$F/tgt.tlt" -o "$F/grad.tlm"
grep -q "gradual unfreezing: 4 copied layers" "$T/err" && ok || bad "gradual unfreezing note: $(head -c 300 "$T/err")"
# Two epochs with one layer released after the first: conv1 has not trained yet.
same conv1.weight "$F/src.tlm" "$F/grad.tlm" && ! same fc2.weight "$F/src.tlm" "$F/grad.tlm" && ok || bad "gradual unfreezing: only the top copied layer trained"

# L2-SP with checkpoints: a resumed run gives the same bytes.
tl-train -q --init "$F/src.tlm" --l2-sp 0.1 --keep-source --epochs 2 --seed 4 "$F/tgt.tlt" -o "$F/sp.tlm" \
  && tl-train -q --init "$F/src.tlm" --l2-sp 0.1 --keep-source --epochs 1 --seed 4 --checkpoint "$F/sp.ck" "$F/tgt.tlt" -o /dev/null \
  && tl-train -q --init "$F/src.tlm" --l2-sp 0.1 --keep-source --epochs 2 --seed 4 --resume "$F/sp.ck" "$F/tgt.tlt" -o "$F/sp2.tlm" \
  && cmp -s "$F/sp.tlm" "$F/sp2.tlm" && ok || bad "L2-SP fine-tuning resumes bit-identically"
expect 0 "keep-source: the source task still answers" -- tl-eval -m "$F/sp.tlm" --task source "$F/src-test.tlt"
tl-tensor slice -q --names fc3.weight "$F/src.tlm" -o "$F/a.npy" \
  && tl-tensor slice -q --names source.fc3.weight "$F/sp.tlm" -o "$F/b.npy" && cmp -s "$F/a.npy" "$F/b.npy" && ok || bad "--keep-source keeps the source classifier unchanged"

# Learning without Forgetting: two tasks; tl-eval and tl-extract pick one.
expect 0 "lwf" -- tl-train -q --init "$F/src.tlm" --lwf 1 --temperature 2 --epochs 2 "$F/tgt.tlt" -o "$F/lwf.tlm"
expect 0 "eval the target task" -- tl-eval -m "$F/lwf.tlm" "$F/tgt-test.tlt"
expect 0 "eval the source task" -- tl-eval -m "$F/lwf.tlm" --task source --json "$F/src-test.tlt"
python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["classes"][0] == "T-shirt/top" and r["count"] > 0' "$T/out" && ok || bad "--task source reports the source classes"
expect 64 "unknown task" -- tl-eval -m "$F/lwf.tlm" --task nosuch "$F/src-test.tlt"
err_has "no task 'nosuch'" "unknown task named"
expect 0 "extract before the source head" -- tl-extract -m "$F/lwf.tlm" --task source "$F/tgt-test.tlt" -o "$F/codes.tlt"
expect 0 "list layers marks the heads" -- tl-extract -m "$F/lwf.tlm" --list-layers
grep -q "scores of task source" "$T/out" && ok || bad "--list-layers marks task outputs"

# Progressive network: the source task is answered exactly as the source network answers it.
expect 0 "progressive" -- tl-train -q --init "$F/src.tlm" --progressive --epochs 2 "$F/tgt.tlt" -o "$F/prog.tlm"
[ "$(acc -m "$F/prog.tlm" --task source "$F/src-test.tlt")" = "$srcacc" ] && ok || bad "progressive: source accuracy unchanged ($srcacc)"
tl-tensor slice -q --names conv2.weight "$F/src.tlm" -o "$F/a.npy" \
  && tl-tensor slice -q --names source.conv2.weight "$F/prog.tlm" -o "$F/b.npy" && cmp -s "$F/a.npy" "$F/b.npy" && ok || bad "progressive: column 1 is the source's bytes"
expect 0 "eval the progressive target task" -- tl-eval -m "$F/prog.tlm" "$F/tgt-test.tlt"

# Multitask: tasks named on the command line, -1 where a file has no label.
expect 0 "multitask" -- tl-train -q --multitask --arch lenet5 --epochs 1 --task-weights source=0.5 target="$F/tgt.tlt" source="$F/src.tlt" -o "$F/mt.tlm"
tl-tensor info --json "$F/mt.tlm" | python3 -c '
import json, sys
m = json.load(sys.stdin)["meta"]
assert [t["name"] for t in m["tasks"]] == ["target", "source"], m["tasks"]
assert m["tasks"][0]["output"] == "head.target" and len(m["tasks"][1]["classes"]) == 5
' && ok || bad "multitask model: two tasks with their heads"
expect 0 "multitask: eval the second task" -- tl-eval -m "$F/mt.tlm" --task source "$F/src-test.tlt"
expect 0 "multitask from a source" -- tl-train --multitask --init "$F/src.tlm" --epochs 1 target="$F/tgt.tlt" source="$F/src.tlt" -o "$F/mti.tlm"
grep -q "copied conv1 .. head.source (5 layers); new head.target" "$T/err" && ok || bad "multitask --init: the trunk and, for the source's classes, the classifier: $(head -c 300 "$T/err")"
# Different inputs through their own first layers: gray 28x28 and the same images as RGB.
python3 - "$F" <<'PY' && ok || bad "make an RGB copy of the target set"
import sys, subprocess, numpy as np
d = sys.argv[1]
subprocess.run(["tl-tensor", "convert", "-q", d + "/tgt.tlt", d + "/tgt.npz"], check=True)
z = np.load(d + "/tgt.npz")
x = z["x"].reshape(-1, 1, 28, 28).repeat(3, axis=1)
np.savez(d + "/rgb.npz", x=x, y=z["y"])
# Two tasks in one file: y.kind (footwear or not) for every row, y.item for half of them.
y = z["y"].astype(np.int64)
item = y.copy(); item[::2] = -1
np.savez(d + "/two.npz", **{"x": z["x"], "y.kind": np.isin(y, [0, 2, 4]).astype(np.int64), "y.item": item})
PY
expect 0 "multitask with per-input first layers" -- tl-train -q --multitask --input-layers 2 --arch "conv3x3-8,relu,conv3x3-8,relu,maxpool2,fc32,relu" \
  --epochs 1 src="$F/src.tlt" rgb="$F/rgb.npz" -o "$F/mi.tlm"
tl-tensor info --json "$F/mi.tlm" | python3 -c '
import json, sys
d = json.load(sys.stdin)
names = [t["name"] for t in d["tensors"]]
assert "src.conv1.weight" in names and "rgb.conv1.weight" in names and names.count("conv2.weight") == 1, names
assert len(d["meta"]["inputs"]) == 2 and d["meta"]["inputs"][1]["shape"] == [3, 28, 28], d["meta"]["inputs"]
' && ok || bad "per-input layers: own stems, one shared middle, two inputs"
expect 0 "eval the RGB task from its input" -- tl-eval -m "$F/mi.tlm" --task rgb "$F/rgb.npz"

expect 0 "multitask from label records y.NAME, -1 for missing" -- tl-train -q --multitask --arch mlp --epochs 2 --task-weights item=2 "$F/two.npz" -o "$F/two.tlm"
tl-tensor info --json "$F/two.tlm" | python3 -c '
import json, sys
t = json.load(sys.stdin)["meta"]["tasks"]
assert [x["name"] for x in t] == ["kind", "item"] and len(t[0]["classes"]) == 2 and len(t[1]["classes"]) == 5, t
' && ok || bad "tasks from y.kind and y.item"
expect 0 "eval the task with labels for every row" -- tl-eval -m "$F/two.tlm" --task kind --json "$F/two.npz"
python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["count"] == 100 and r["classes"] == ["0", "1"], r' "$T/out" && ok || bad "--task kind reads y.kind"
expect 0 "eval a task whose labels have gaps: rows without one are left out" -- tl-eval -m "$F/two.tlm" --task item --json "$F/two.npz"
python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["count"] == 50, r["count"]' "$T/out" && grep -q "50 of 100 rows have no label" "$T/err" && ok || bad "tl-eval leaves out rows labeled -1: $(head -c 200 "$T/err")"
expect 65 "a label below -1" -- bash -c "python3 -c \"import numpy as np; np.savez('$F/neg.npz', x=np.zeros((4, 3), np.float32), y=np.array([0, 1, -2, 1]))\" && tl-train --multitask --arch mlp '$F/neg.npz' -o '$F/bad.tlm'"

# Misuse: one line, exit 64.
expect 64 "copy an unknown layer" -- tl-train --init "$F/src.tlm" --copy conv9 "$F/tgt.tlt" -o "$F/bad.tlm"
err_has "no layer 'conv9'" "unknown layer named"
expect 64 "fine-tuning option without --init" -- tl-train --lwf 1 "$F/tgt.tlt" -o "$F/bad.tlm"
err_has "--lwf needs --init" "--lwf without --init"
expect 64 "--arch with --init" -- tl-train --init "$F/src.tlm" --arch mlp "$F/tgt.tlt" -o "$F/bad.tlm"
expect 64 "--progressive with --copy" -- tl-train --init "$F/src.tlm" --progressive --copy all "$F/tgt.tlt" -o "$F/bad.tlm"
tl-tensor select -q --classes 5-8 --per-class 5 "$T/ttr.tlt" -o "$F/four.tlt"
expect 64 "copying the classifier for other classes" -- tl-train --init "$F/src.tlm" --copy all --epochs 1 "$F/four.tlt" -o "$F/bad.tlm"
err_has "the source has 5 classes and the target 4" "classifier copy refused"
tl-tensor select -q --classes 0-4 --per-class 5 "$T/ttr.tlt" -o "$F/few.tlt"
expect 64 "inputs of two shapes need --input-layers" -- tl-train --multitask --arch mlp "$F/few.tlt" "$F/rgb.npz" -o "$F/bad.tlm"
expect 64 "a checkpoint of another network" -- tl-train -q --init "$F/src.tlm" --progressive --epochs 2 --resume "$F/sp.ck" "$F/tgt.tlt" -o "$F/bad.tlm"
[ ! -e "$F/bad.tlm" ] && ok || bad "no model file after a usage error"

# Imported networks fine-tune too: the source as ONNX (tl's exporter), read back as a graph.
expect 0 "source to ONNX" -- tl-tensor convert "$F/src.tlm" "$F/src.onnx"
expect 0 "fine-tune an imported graph, early layers frozen" -- tl-train --init "$F/src.onnx" --freeze ..conv2 --keep-source --epochs 2 "$F/tgt.tlt" -o "$F/g.tlm"
grep -q "new fc3; frozen conv1, conv2" "$T/err" && ok || bad "graph fine-tuning note: $(head -c 400 "$T/err")"
tl-tensor slice -q --names conv2.weight "$F/src.tlm" -o "$F/a.npy" && tl-tensor slice -q --names conv2.weight "$F/g.tlm" -o "$F/b.npy" \
  && cmp -s "$F/a.npy" "$F/b.npy" && ok || bad "graph: frozen conv2 unchanged"
expect 0 "progressive from an imported graph" -- tl-train -q --init "$F/src.onnx" --progressive --epochs 2 "$F/tgt.tlt" -o "$F/gp.tlm"
[ "$(acc -m "$F/gp.tlm" --task source "$F/src-test.tlt")" = "$srcacc" ] && ok || bad "progressive from a graph: source accuracy unchanged ($srcacc)"
