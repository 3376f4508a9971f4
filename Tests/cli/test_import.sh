# Networks from elsewhere: ONNX and safetensors in, ONNX and safetensors out.
# Sourced by Tests/cli/run.sh (helpers: expect, err_has, ok, bad, skipped).
I=$T/import; mkdir -p "$I"
FIX=$ROOT/Tests/fixtures/onnx
SHM=$ROOT/../shared/models
have_ort=0; python3 -c 'import onnxruntime, numpy' 2>/dev/null && have_ort=1
SYSPY=/usr/bin/python3; [ -x $SYSPY ] || SYSPY=python3
have_torch=0; $SYSPY -c 'import torch' 2>/dev/null && have_torch=1

# --- ONNX in: the repository's fixture (a PyTorch-style graph with the flatten chain).
expect 0 "convert an ONNX model" -- tl-tensor convert "$FIX/pytorch_flatten_chain/model.onnx" "$I/chain.tlm" --mean 0.1 --std 2
err_has "graph of 7 nodes" "convert note"
tl-tensor info --json "$I/chain.tlm" | python3 -c "
import json, sys; m = json.load(sys.stdin)['meta']
assert m['kind'] == 'model' and m['arch'] == 'graph' and [n['op'] for n in m['graph']['nodes']][:2] == ['Conv', 'Relu'], m
i = m['input']; assert abs(i['mean'][0] - 0.1) < 1e-7 and i['std'] == [2] and i['scale'] == 1 and i['shape'] == [2, 6, 6], i
assert m['classes'] == ['0', '1', '2', '3', '4']" \
  && ok || bad "graph model file: meta"
expect 0 "list the layers of an imported graph" -- tl-extract -m "$I/chain.tlm" --list-layers
grep -qE "^conv +Conv +4x6x6" "$T/out" && grep -qE "^[A-Za-z_.0-9]+ +Reshape +36 +default" "$T/out" && ok || bad "--list-layers of a graph: $(cat "$T/out")"
if [ $have_ort = 1 ]; then
  # tl on the imported graph (its normalization included) against onnxruntime on the original.
  python3 -c "import numpy as np; np.save('$I/x.npy', np.random.default_rng(1).standard_normal((5, 2, 6, 6)).astype(np.float32))"
  tl-tensor stack -q x="$I/x.npy" -o "$I/x.tlt"
  tl-extract -q -m "$I/chain.tlm" --layer LogSoftmax "$I/x.tlt" -o "$I/tl.npy" 2>/dev/null || tl-extract -q -m "$I/chain.tlm" --layer logsoftmax1 "$I/x.tlt" -o "$I/tl.npy"
  python3 - "$I" "$FIX/pytorch_flatten_chain/model.onnx" <<'PY' && ok || bad "imported graph matches onnxruntime"
import numpy as np, onnxruntime as ort, sys
d = sys.argv[1]
x = np.load(d + "/x.npy"); y = ort.InferenceSession(sys.argv[2], providers=["CPUExecutionProvider"]).run(None, {"input": (x - 0.1) / 2})[0]
got = np.load(d + "/tl.npy")
assert np.abs(got - y).max() <= 1e-4 * np.abs(y).max(), np.abs(got - y).max()
PY
  # Out again to ONNX, and tl's own networks to ONNX: onnxruntime gives tl's outputs.
  tl-tensor convert -q "$I/chain.tlm" "$I/chain2.onnx" && ok || bad "graph model to ONNX"
  tl-tensor stack -q "$SAMPLE/images-idx3-ubyte.gz" "$SAMPLE/labels-idx1-ubyte.gz" -o "$I/s.tlt"
  tl-tensor head -q -n 300 "$I/s.tlt" -o "$I/s300.tlt"
  tl-train -q --arch "conv3x3-8,bn,relu,res8,maxpool2,dropout0.2,fc16,gelu" --epochs 1 "$I/s300.tlt" -o "$I/own.tlm"
  tl-tensor convert -q "$I/own.tlm" "$I/own.onnx" && tl-eval -q -m "$I/own.tlm" --predict "$I/s300.tlt" -o "$I/own-pred.npz" \
    && tl-tensor convert -q "$I/s300.tlt" "$I/s300.npz" && python3 - "$I" <<'PY' && ok || bad "tl network exported to ONNX: onnxruntime agrees"
import numpy as np, onnxruntime as ort, sys
d = sys.argv[1]
x = np.load(d + "/s300.npz")["x"].astype(np.float32)[:, None]
for m, ref in [("own", "own-pred")]:
    y = ort.InferenceSession(f"{d}/{m}.onnx", providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    e = np.exp(y - y.max(1, keepdims=True)); p = e / e.sum(1, keepdims=True)
    assert np.abs(p - np.load(f"{d}/{ref}.npz")["prob"]).max() < 1e-5
PY
else skipped "ONNX checks against onnxruntime: pip install onnxruntime"; fi

# --- safetensors out and in: a tl model as a PyTorch state dict, and back onto the architecture.
tl-tensor stack -q "$SAMPLE/images-idx3-ubyte.gz" "$SAMPLE/labels-idx1-ubyte.gz" -o "$I/s.tlt"
tl-tensor head -q -n 300 "$I/s.tlt" -o "$I/s300.tlt"
tl-train -q --arch lenet5 --epochs 1 "$I/s300.tlt" -o "$I/lenet.tlm"
expect 0 "model to safetensors" -- tl-tensor convert "$I/lenet.tlm" "$I/lenet.safetensors"
tl-tensor info "$I/lenet.safetensors" | grep -qE "conv1.weight +f32 +6x1x5x5" && ok || bad "state dict names and shapes"
expect 0 "state dict onto lenet5" -- tl-tensor convert --arch lenet5 --input-shape 1x28x28 --scale 0.00392156862745098 \
  --mean "$(tl-tensor info --json "$I/lenet.tlm" | python3 -c "import json,sys; print(json.load(sys.stdin)['meta']['input']['mean'][0])")" \
  --std "$(tl-tensor info --json "$I/lenet.tlm" | python3 -c "import json,sys; print(json.load(sys.stdin)['meta']['input']['std'][0])")" \
  "$I/lenet.safetensors" "$I/back.tlm"
tl-eval -q -m "$I/lenet.tlm" --predict "$I/s300.tlt" -o "$I/p1.tlt" && tl-eval -q -m "$I/back.tlm" --predict "$I/s300.tlt" -o "$I/p2.tlt" \
  && cmp -s <(tl-tensor convert -q "$I/p1.tlt" - --to npy --name prob) <(tl-tensor convert -q "$I/p2.tlt" - --to npy --name prob) \
  && ok || bad "a model through safetensors predicts the same"
if [ $have_torch = 1 ]; then
  tl-eval -q -m "$I/lenet.tlm" --predict "$I/s300.tlt" -o "$I/p1.npz" && tl-tensor convert -q "$I/s300.tlt" "$I/s300.npz"
  $SYSPY - "$I" <<'PY' && ok || bad "PyTorch load_state_dict(strict=True) takes tl's safetensors and computes tl's outputs"
import json, struct, sys
import numpy as np, torch, torch.nn as nn
d = sys.argv[1]
raw = open(d + "/lenet.safetensors", "rb").read()
n = struct.unpack("<Q", raw[:8])[0]; head = json.loads(raw[8:8 + n]); data = raw[8 + n:]
meta = head.pop("__metadata__")
sd = {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], np.float32).reshape(v["shape"]).copy()) for k, v in head.items()}
class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 6, 5), nn.Conv2d(6, 16, 5)
        self.fc1, self.fc2, self.fc3 = nn.Linear(256, 120), nn.Linear(120, 84), nn.Linear(84, 10)
    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.conv1(x)), 2); x = torch.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x.flatten(1))))))
m = LeNet(); m.load_state_dict(sd, strict=True)
inp = json.loads(meta)["input"] if isinstance(meta, str) else json.loads(json.loads(json.dumps(meta))["input"]) if isinstance(meta.get("input"), str) else meta["input"]
x = torch.from_numpy(np.load(d + "/s300.npz")["x"].astype(np.float32)[:, None] * inp["scale"])
x = (x - inp["mean"][0]) / inp["std"][0]
p = torch.softmax(m(x), 1).detach().numpy()
assert np.abs(p - np.load(d + "/p1.npz")["prob"]).max() < 1e-5
PY
else skipped "PyTorch load_state_dict check: apt-get install python3-torch"; fi

# --- The reference networks in ../shared, when present: PyTorch's accuracy through ONNX and safetensors.
if [ -d "$SHM/pytorch-fmnist" ]; then
  tl-tensor head -q -n 1000 "$I/s.tlt" -o "$I/s1k.tlt"
  for src in "$SHM/pytorch-fmnist/fmnist_lenet.onnx" "--arch lenet5 --input-shape 1x28x28 $SHM/pytorch-fmnist/fmnist_lenet.safetensors"; do
    tl-tensor convert -q --scale 0.00392156862745098 --mean 0.2860 --std 0.3530 $src "$I/pt.tlm" \
      && tl-eval -m "$I/pt.tlm" --json "$I/s1k.tlt" | python3 -c "import json,sys; a = json.load(sys.stdin)['accuracy']; assert abs(a - 0.879) < 0.011, a" \
      && ok || bad "PyTorch's LeNet-5 ($src): its accuracy on the sample"
  done
else skipped "reference networks: ../shared/models is absent"; fi
if [ -f "$SHM/efficientnet-lite0-imagenet/efficientnet_lite0_imagenet.onnx" ]; then
  expect 0 "EfficientNet-Lite0 with its preprocessing and class names" -- tl-tensor convert --mean 127 --std 128 \
    --classes "$SHM/efficientnet-lite0-imagenet/imagenet_classes.txt" "$SHM/efficientnet-lite0-imagenet/efficientnet_lite0_imagenet.onnx" "$I/effnet.tlm"
  tl-extract -m "$I/effnet.tlm" --list-layers > "$T/out" && grep -qE " 1280 +default" "$T/out" && ok || bad "EfficientNet's default cut is the 1280 pooled features: $(tail -3 "$T/out")"
  # Fashion-MNIST images (gray 28x28) become RGB 224x224 on the way in.
  tl-tensor head -q -n 4 "$I/s.tlt" -o "$I/s4.tlt"
  tl-extract -q -m "$I/effnet.tlm" "$I/s4.tlt" -o "$I/eff.tlt" && tl-tensor info --json "$I/eff.tlt" | grep -q '"shape":\[4,1280\]' && ok || bad "ImageNet codes for gray images"
else skipped "EfficientNet-Lite0: ../shared/models is absent"; fi

# --- Bad input.
expect 64 "state dict without --arch" -- tl-tensor convert "$I/lenet.safetensors" "$I/bad.tlm" --input-shape 1x28x28 --mean 0.3
expect 64 "--arch without --input-shape" -- tl-tensor convert --arch lenet5 "$I/lenet.safetensors" "$I/bad.tlm"
err_has "--input-shape" "input shape message"
expect 65 "a state dict for another architecture" -- tl-tensor convert --arch cnn-small --input-shape 1x28x28 "$I/lenet.safetensors" "$I/bad.tlm"
err_has "cnn-small needs 32x1x3x3" "shape mismatch message"
expect 65 "a state dict missing a tensor" -- bash -c "tl-tensor slice -q --names conv1.weight,conv1.bias '$I/lenet.safetensors' -o '$I/part.safetensors' && tl-tensor convert --arch lenet5 --input-shape 1x28x28 --classes '$SAMPLE/classes.txt' '$I/part.safetensors' '$I/bad.tlm'"
err_has "lacks" "missing tensors message"
expect 64 "model options on data" -- tl-tensor convert --mean 0.5 "$I/s.tlt" "$I/bad.npz"
expect 64 "--std 0" -- tl-tensor convert --std 0 "$FIX/pytorch_flatten_chain/model.onnx" "$I/bad.tlm"
expect 64 "three means for a two-channel input" -- tl-tensor convert --mean 1,2,3 "$FIX/pytorch_flatten_chain/model.onnx" "$I/bad.tlm"
head -c 900 "$FIX/mobile_ops/model.onnx" > "$I/cut.onnx"
expect 65 "a truncated ONNX file" -- tl-tensor convert "$I/cut.onnx" "$I/bad.tlm"
err_has "cut.onnx" "names the file"
expect 65 "a truncated safetensors file" -- bash -c "head -c 500 '$I/lenet.safetensors' > '$I/cut.safetensors'; tl-tensor convert --arch lenet5 --input-shape 1x28x28 '$I/cut.safetensors' '$I/bad.tlm'"
expect 65 "extract with a truncated ONNX model" -- tl-extract -m "$I/cut.onnx" "$I/s.tlt" -o "$I/bad.tlt"
[ ! -e "$I/bad.tlm" ] && [ ! -e "$I/bad.tlt" ] && ok || bad "no output after import errors"
