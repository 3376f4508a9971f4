#!/usr/bin/env bash
# `make bench`: speed and memory figures, each next to its peer measured in the same run.
# Usage: TL_BIN=.build/release bash Tests/bench/bench.sh [SECTION...]
# Sections: tensor kernels train pipeline import (default: all). Peers are used when present and named when absent;
# see Tests/bench/README.md for how to install them. Nothing here asserts a time: it prints.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
BIN=${TL_BIN:-.build/release}
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac
export PATH=$BIN:$PATH
OUT=$ROOT/Tests/bench/out
mkdir -p "$OUT"
SECTIONS=${*:-tensor kernels train pipeline import}
SHARED=$ROOT/../shared
# Debian's python3 (where python3-torch lives) may differ from the python3 on PATH.
SYSPY=/usr/bin/python3; [ -x $SYSPY ] || SYSPY=python3

# peak_rss_kb CMD...: runs CMD (stdout to /dev/null) and prints its peak resident set in KiB.
peak_rss_kb() { /usr/bin/time -f %M -o "$OUT/rss" "$@" > /dev/null; cat "$OUT/rss"; }
# seconds CMD...: wall time of CMD, best of 3.
seconds() {
  python3 - "$@" <<'PY'
import subprocess, sys, time
best = 1e9
for _ in range(3):
    t = time.perf_counter(); subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); best = min(best, time.perf_counter() - t)
print(f"{best:.4f}")
PY
}

fmnist_train() {
  for d in "$SHARED/data/fashion-mnist" "$ROOT/examples/data/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    [ -f "$d/train-images-idx3-ubyte.gz" ] && { echo "$d"; return; }
  done
  make -s data >&2 && echo "$ROOT/examples/data/fashion-mnist"
}

bench_tensor() {
  echo "== tensor I/O (tl-tensor; issue 2)"
  local D; D=$(fmnist_train)
  tl-tensor stack "$D/train-images-idx3-ubyte.gz" "$D/train-labels-idx1-ubyte.gz" -o "$OUT/train60k.tlt"
  tl-tensor convert --dtype f32 "$OUT/train60k.tlt" "$OUT/train60k-f32.tlt"
  local bytes; bytes=$(stat -c %s "$OUT/train60k-f32.tlt")
  # From a pipe (read(2) into chunk buffers, every checksum verified) to /dev/null, and with a
  # pipe on both sides; the peer is the same bytes through `cat` processes.
  local t; t=$(seconds bash -c "cat '$OUT/train60k-f32.tlt' | tl-tensor cat - > /dev/null")
  echo "cat from a pipe, $((bytes / 1000000)) MB f32:       $(python3 -c "print(f'{$bytes/$t/1e9:.2f}')") GB/s (target >= 1)"
  t=$(seconds bash -c "cat '$OUT/train60k-f32.tlt' | tl-tensor cat - | cat > /dev/null")
  echo "cat pipe to pipe:                 $(python3 -c "print(f'{$bytes/$t/1e9:.2f}')") GB/s"
  local tdd; tdd=$(seconds bash -c "cat '$OUT/train60k-f32.tlt' | cat | cat > /dev/null")
  echo "  peer: cat | cat | cat:          $(python3 -c "print(f'{$bytes/$tdd/1e9:.2f}')") GB/s"
  # A mapped file: payloads are used in place. The peak RSS of `info` (which walks and checks
  # every payload) is the mapping's pages, not a second copy: compare it with the file size.
  local rss; rss=$(peak_rss_kb tl-tensor info "$OUT/train60k-f32.tlt")
  echo "info on a mapped $((bytes / 1000000)) MB file: peak RSS $((rss / 1024)) MiB (a copy would add $((bytes / 1048576)) MiB)"
  # Streaming convert: peak memory bounded by the chunk size, not the data size.
  tl-tensor head -n 10000 "$OUT/train60k.tlt" -o "$OUT/train10k.tlt"
  local r10 r60
  r10=$(peak_rss_kb bash -c "cat '$OUT/train10k.tlt' | tl-tensor convert --dtype f32 - -")
  r60=$(peak_rss_kb bash -c "cat '$OUT/train60k.tlt' | tl-tensor convert --dtype f32 - -")
  echo "streaming convert u8->f32 through a pipe: peak RSS $((r10 / 1024)) MiB for 10k rows, $((r60 / 1024)) MiB for 60k rows"
  r60=$(peak_rss_kb tl-tensor convert --dtype f32 "$OUT/train60k.tlt" -)
  echo "  (from the mapped file, 60k rows: $((r60 / 1024)) MiB, of which the input's page-cache pages count in RSS)"
  r10=$(peak_rss_kb tl-tensor convert --dtype f32 "$D/train-images-idx3-ubyte.gz" - --name x)
  echo "  (IDX .gz -> f32 stream, 60k rows: $((r10 / 1024)) MiB)"
  # Start-up.
  if command -v hyperfine >/dev/null; then
    hyperfine -N -w 20 -r 200 --export-json "$OUT/help.json" "tl-tensor --help" > /dev/null
    echo "tl-tensor --help start-up: $(python3 -c "import json; r=json.load(open('$OUT/help.json'))['results'][0]; print(f\"{r['mean']*1e3:.1f} ms mean, {r['min']*1e3:.1f} ms min\")") (target < 20 ms)"
  else
    t=$(python3 - <<PY
import subprocess, time
best = 1e9
for _ in range(50):
    t = time.perf_counter(); subprocess.run(["$BIN/tl-tensor", "--help"], stdout=subprocess.DEVNULL); best = min(best, time.perf_counter() - t)
print(f"{best*1e3:.1f}")
PY
)
    echo "tl-tensor --help start-up: $t ms best of 50 (target < 20 ms; hyperfine not installed)"
  fi
  rm -f "$OUT"/train*.tlt
}

bench_kernels() {
  echo "== kernels (issue 3): tl (Swift; the GEMM micro-kernel in C with AVX-512 when the CPU has it, TL_AVX512=off for the Swift one), beside OpenBLAS (dlopen) and PyTorch in the same run"
  if [ ! -x "$BIN/tl-bench" ]; then echo "tl-bench not built (make build)"; return; fi
  tl-bench peak | tee "$OUT/kernels.tsv" | grep -v "^peak"
  echo "OpenBLAS: $(tl-bench blas-info)"
  # tl and OpenBLAS in separate processes, alternating, three rounds; best of each.
  # "swift": the same GEMM with TL_AVX512=off, the pure-Swift AVX2 micro-kernel (issue 3's targets are for it).
  local avx512=0; [ "$(tl-bench avx512)" = "yes" ] && avx512=1
  for round in 1 2 3; do
    tl-bench gemm-tl >> "$OUT/kernels.tsv"; tl-bench gemm-blas >> "$OUT/kernels.tsv"
    [ $avx512 = 1 ] && TL_AVX512=off tl-bench gemm-tl | sed 's/^gemm\ttl\t/gemm\tswift\t/' >> "$OUT/kernels.tsv"
  done
  python3 - "$OUT/kernels.tsv" "$avx512" <<'PY'
import sys, collections
best = collections.defaultdict(float); order = []; peak = (1.0, 1.0)
for line in open(sys.argv[1]):
    f = line.rstrip("\n").split("\t")
    if f[0] == "peak": peak = (float(f[1]), float(f[2]))
    if f[0] != "gemm": continue
    key = (f[2], f[3], f[4], f[5])
    if key not in order: order.append(key)
    best[(key, f[1], f[6])] = max(best[(key, f[1], f[6])], float(f[7]))
impls = [i for i in ("tl", "swift") if any(k[1] == i for k in best)]
for impl in impls:
    what = {"tl": "tl with the C AVX-512 micro-kernel" if sys.argv[2] == "1" else "tl, pure Swift (this CPU has no AVX-512)",
            "swift": "tl, pure Swift (TL_AVX512=off: the AVX2 micro-kernel)"}[impl]
    print(f"GEMM, {what}: GFLOP/s, best of 3 rounds; ratio = tl / OpenBLAS at the same thread count; peak = tl 2T / FMA peak 2T")
    print(f"  {'M x K x N  op':<30}{'tl 1T':>8}{'BLAS 1T':>9}{'ratio':>7}{'tl 2T':>8}{'BLAS 2T':>9}{'ratio':>7}{'peak':>7}{'2T/1T':>7}")
    for key in order:
        t1, t2 = best[(key, impl, '1')], best[(key, impl, '2')]
        o1, o2 = best.get((key, 'blas', '1')), best.get((key, 'blas', '2'))
        r = lambda a, b: f"{a / b:.2f}" if b else "-"
        s = lambda x: f"{x:.1f}" if x else "-"
        print(f"  {key[0] + 'x' + key[1] + 'x' + key[2] + '  ' + key[3]:<30}{t1:8.1f}{s(o1):>9}{r(t1, o1):>7}{t2:8.1f}{s(o2):>9}{r(t2, o2):>7}{t2 / peak[1]:7.2f}{t2 / t1:7.2f}")
PY
  tl-bench conv
  if $SYSPY -c 'import torch' 2>/dev/null; then
    $SYSPY "$ROOT/Tests/bench/torch_conv.py"
  else
    echo "  PyTorch: not installed (apt-get install python3-torch); no peer for the convolution figures"
  fi
}

bench_train() {
  echo "== training from scratch (issue 4): tl-train beside PyTorch, same model, batch, data, 2 threads; best of 2 alternating rounds"
  local D; D=$(fmnist_train)
  tl-tensor stack "$D/train-images-idx3-ubyte.gz" "$D/train-labels-idx1-ubyte.gz" -o "$OUT/t60k.tlt"
  tl-tensor head -n 20000 "$OUT/t60k.tlt" -o "$OUT/t20k.tlt"
  tl-tensor head -n 4000 "$OUT/t60k.tlt" -o "$OUT/t4k.tlt"
  tl-tensor head -n 10000 "$OUT/t60k.tlt" -o "$OUT/t10k.tlt"
  local havetorch=0; $SYSPY -c 'import torch' 2>/dev/null && havetorch=1
  [ $havetorch = 1 ] || echo "  PyTorch: not installed (apt-get install python3-torch); tl figures only"
  printf "  %-10s %6s %14s %14s %7s %14s %14s %7s %12s %12s\n" arch batch "tl train/s" "torch train/s" ratio "tl infer/s" "torch infer/s" ratio "tl RSS MiB" "torch RSS"
  # tl and PyTorch alternate, two rounds; the best of each (the machine is shared and noisy).
  for cfg in "lenet5 64 t20k 20000" "lenet5 256 t20k 20000" "cnn-small 64 t10k 10000" "cnn-small 256 t10k 10000"; do
    set -- $cfg
    local tr=0 inf=0 rss=0 ttr=0 tinf=0 trss=- r1=- r2=-
    for round in 1 2; do
      local r t i; r=$(peak_rss_kb tl-train -q --threads 2 --arch "$1" --batch "$2" --epochs 1 --log "$OUT/log.csv" "$OUT/$3.tlt" -o "$OUT/m.tlm")
      t=$(tail -1 "$OUT/log.csv" | cut -d, -f7); i=$(tl-bench infer "$OUT/m.tlm" "$2" | cut -f2)
      tr=$(python3 -c "print(max($tr, $t))"); inf=$(python3 -c "print(max($inf, $i))"); rss=$r
      if [ $havetorch = 1 ]; then
        local a b; read -r _ _ _ a b trss < <($SYSPY "$ROOT/Tests/bench/torch_train.py" "$D/train-images-idx3-ubyte.gz" "$D/train-labels-idx1-ubyte.gz" "$4" "$1" "$2")
        ttr=$(python3 -c "print(max($ttr, $a))"); tinf=$(python3 -c "print(max($tinf, $b))")
      fi
    done
    if [ $havetorch = 1 ]; then
      r1=$(python3 -c "print(f'{$tr/$ttr:.2f}')"); r2=$(python3 -c "print(f'{$inf/$tinf:.2f}')")
    else ttr=- tinf=-; fi
    printf "  %-10s %6s %14.0f %14s %7s %14.0f %14s %7s %12s %12s\n" "$1" "$2" "$tr" "$ttr" "$r1" "$inf" "$tinf" "$r2" "$((rss / 1024))" "$trss"
  done
  # Peak memory does not grow with epochs.
  local r1e r3e
  r1e=$(peak_rss_kb tl-train -q --arch lenet5 --epochs 1 "$OUT/t4k.tlt" -o "$OUT/m.tlm")
  r3e=$(peak_rss_kb tl-train -q --arch lenet5 --epochs 4 "$OUT/t4k.tlt" -o "$OUT/m.tlm")
  echo "  lenet5 peak RSS: $((r1e / 1024)) MiB after 1 epoch, $((r3e / 1024)) MiB after 4"
  rm -f "$OUT"/t60k.tlt "$OUT"/t20k.tlt "$OUT"/t10k.tlt "$OUT"/t4k.tlt "$OUT"/m.tlm
}

fmnist_test() {
  local d; d=$(dirname "$(fmnist_train)/x")
  [ -f "$d/t10k-images-idx3-ubyte.gz" ] && echo "$d" || { make -s data >&2 && echo "$ROOT/examples/data/fashion-mnist"; }
}

bench_pipeline() {
  echo "== the canonical pipeline (issue 5): tl-extract beside onnxruntime and PyTorch, tl-train --linear beside scikit-learn"
  local D; D=$(fmnist_test)
  tl-tensor stack -q "$D/train-images-idx3-ubyte.gz" "$D/train-labels-idx1-ubyte.gz" -o "$OUT/p60k.tlt"
  tl-tensor stack -q "$D/t10k-images-idx3-ubyte.gz" "$D/t10k-labels-idx1-ubyte.gz" -o "$OUT/p10k.tlt"
  tl-tensor head -q -n 6000 "$OUT/p60k.tlt" -o "$OUT/p6k.tlt"
  local haveort=0 havesk=0 havetorch=0
  python3 -c 'import onnxruntime' 2>/dev/null && haveort=1
  python3 -c 'import sklearn, scipy' 2>/dev/null && havesk=1
  $SYSPY -c 'import torch' 2>/dev/null && havetorch=1
  [ $haveort = 1 ] || echo "  onnxruntime: not installed (pip install onnxruntime); tl figures only"
  [ $havesk = 1 ] || echo "  scikit-learn: not installed (pip install scikit-learn); tl figures only"
  [ $havetorch = 1 ] || echo "  PyTorch: not installed (apt-get install python3-torch)"

  # Extraction: the same network in tl-extract (end to end: read u8 images, normalize, forward,
  # write features), in onnxruntime and in PyTorch (forward on batches in memory), batch 32.
  echo "  tl-extract, batch 32, 2 threads (networks trained for 1 epoch on 6,000 images; the weights do not change the speed):"
  printf "  %-10s %16s %14s %14s %8s %14s %8s\n" arch "tl-extract img/s" "tl fwd img/s" "onnxruntime" ratio "PyTorch" ratio
  tl-tensor convert -q "$OUT/p10k.tlt" "$OUT/p10k.npz"
  for arch in lenet5 cnn-small; do
    tl-train -q --arch $arch --epochs 1 "$OUT/p6k.tlt" -o "$OUT/$arch.tlm"
    local t; t=$(seconds bash -c "tl-extract -q -j 2 -b 32 -m '$OUT/$arch.tlm' '$OUT/p60k.tlt' > /dev/null")
    local ex; ex=$(python3 -c "print(f'{60000/$t:.0f}')")
    local fwd; fwd=$(tl-bench infer "$OUT/$arch.tlm" 32 | cut -f2)
    local o=- r1=- pt=- r2=-
    if [ $haveort = 1 ]; then
      tl-tensor convert -q "$OUT/$arch.tlm" "$OUT/$arch.onnx"
      o=$(python3 "$ROOT/Tests/bench/peers_pipeline.py" ort "$OUT/$arch.onnx" "$OUT/p10k.npz" 32 | cut -f2)
      r1=$(python3 -c "print(f'{$ex/$o:.2f}')")
    fi
    if [ $havetorch = 1 ]; then
      tl-tensor convert -q "$OUT/$arch.tlm" "$OUT/$arch.npz"
      pt=$($SYSPY "$ROOT/Tests/bench/torch_infer.py" $arch "$OUT/$arch.npz" "$OUT/p10k.npz" 32 | cut -f2)
      r2=$(python3 -c "print(f'{$ex/$pt:.2f}')")
    fi
    printf "  %-10s %16s %14.0f %14s %8s %14s %8s\n" $arch "$ex" "$fwd" "$o" "$r1" "$pt" "$r2"
  done
  echo "  (ratios: tl-extract end to end / the peer's forward passes alone)"
  # Memory: peak RSS over 60,000 images against 6,000, from a mapped file and from a pipe.
  local r6 r60 p6 p60
  r6=$(peak_rss_kb tl-extract -q -m "$OUT/cnn-small.tlm" "$OUT/p6k.tlt"); r60=$(peak_rss_kb tl-extract -q -m "$OUT/cnn-small.tlm" "$OUT/p60k.tlt")
  p6=$(peak_rss_kb bash -c "tl-tensor head -q -n 6000 '$D/train-images-idx3-ubyte.gz' | tl-extract -q -m '$OUT/cnn-small.tlm'")
  p60=$(peak_rss_kb bash -c "cat '$D/train-images-idx3-ubyte.gz' | tl-extract -q -m '$OUT/cnn-small.tlm'")
  echo "  tl-extract cnn-small peak RSS: mapped file $((r6 / 1024)) MiB for 6,000 images, $((r60 / 1024)) MiB for 60,000;" \
       "IDX.gz through a pipe $((p6 / 1024)) / $((p60 / 1024)) MiB"

  # Linear classifier on 512-d codes of all 60,000 training images; accuracy on the 10,000 test images.
  echo "  linear softmax classifier, C = 1 (scikit-learn's default), 60,000 x 512 features, test on 10,000:"
  tl-train -q --arch conv5x5-32,relu,maxpool2,conv5x5-64,relu,maxpool2,fc512,relu --epochs 1 "$OUT/p6k.tlt" -o "$OUT/f512.tlm"
  tl-extract -q -m "$OUT/f512.tlm" "$OUT/p60k.tlt" -o "$OUT/ftr.tlt"
  tl-extract -q -m "$OUT/f512.tlm" "$OUT/p10k.tlt" -o "$OUT/fte.tlt"
  local t0 t1; t0=$(python3 -c 'import time; print(time.perf_counter())')
  tl-train --linear "$OUT/ftr.tlt" -o "$OUT/lin.tlm" 2> "$OUT/lin.err"
  t1=$(python3 -c 'import time; print(time.perf_counter())')
  local tlt; tlt=$(python3 -c "print(f'{$t1-$t0:.2f}')")
  local acc; acc=$(tl-eval -m "$OUT/lin.tlm" --json "$OUT/fte.tlt" | python3 -c "import json,sys; print(f\"{json.load(sys.stdin)['accuracy']:.4f}\")")
  local its obj; its=$(grep -oE "[0-9]+ iterations" "$OUT/lin.err" | cut -d' ' -f1); obj=$(grep -oE "objective [0-9.]+" "$OUT/lin.err" | cut -d' ' -f2)
  printf "  %-14s %10s %11s %14s %12s\n" "" "seconds" iterations "test accuracy" objective
  printf "  %-14s %10s %11s %14s %12s\n" "tl-train" "$tlt" "$its" "$acc" "$obj"
  if [ $havesk = 1 ]; then
    tl-tensor convert -q "$OUT/ftr.tlt" "$OUT/ftr.npz"; tl-tensor convert -q "$OUT/fte.tlt" "$OUT/fte.npz"
    local sk; sk=$(OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 python3 "$ROOT/Tests/bench/peers_pipeline.py" sklearn "$OUT/ftr.npz" "$OUT/fte.npz" 1 2>/dev/null)
    IFS=$'\t' read -r _ st si sa so <<< "$sk"
    printf "  %-14s %10s %11s %14s %12s\n" "scikit-learn" "$st" "$si" "$sa" "$so"
    echo "  tl is $(python3 -c "print(f'{$st/$tlt:.1f}')")x faster (target >= 5x); accuracy difference $(python3 -c "print(f'{($acc-$sa)*100:+.2f}')") points (target within 0.3)"
    echo "  (time includes tl-train reading the 123 MB file; scikit-learn's is fit() alone, to convergence, 2 BLAS threads)"
  fi
  rm -f "$OUT"/p60k.tlt "$OUT"/p6k.tlt "$OUT"/p10k.* "$OUT"/ftr.* "$OUT"/fte.*
}

bench_import() {
  echo "== networks from elsewhere (issue 6): imported ONNX models beside onnxruntime and PyTorch, batch 32, 2 threads"
  local haveort=0 havetorch=0 haveonnx=0
  python3 -c 'import onnxruntime' 2>/dev/null && haveort=1
  python3 -c 'import onnx' 2>/dev/null && haveonnx=1
  $SYSPY -c 'import torch, torchvision' 2>/dev/null && havetorch=1
  [ $haveort = 1 ] || echo "  onnxruntime: not installed (pip install onnxruntime)"
  [ $havetorch = 1 ] || echo "  PyTorch/torchvision: not installed (apt-get install python3-torch python3-torchvision); no ResNet-18"
  local eff=$SHARED/models/efficientnet-lite0-imagenet/efficientnet_lite0_imagenet.onnx
  local models=()
  if [ -f "$eff" ]; then
    cp "$eff" "$OUT/effnet_224.onnx"; models+=("EfficientNet-Lite0|effnet|224")
    # The same network declared for 64x64 inputs (it has no reshape that depends on the size).
    if [ $haveonnx = 1 ]; then
      python3 -c "
import onnx; m = onnx.load('$eff'); d = m.graph.input[0].type.tensor_type.shape.dim; d[2].dim_value = 64; d[3].dim_value = 64; onnx.save(m, '$OUT/effnet_64.onnx')"
      models+=("EfficientNet-Lite0|effnet|64")
    fi
  else echo "  EfficientNet-Lite0: ../shared/models is absent"; fi
  if [ $havetorch = 1 ]; then
    for hw in 224 64; do $SYSPY "$ROOT/Tests/bench/torch_resnet.py" 32 $hw "$OUT/resnet18_$hw.onnx" > "$OUT/torch_resnet_$hw.txt"; models+=("ResNet-18|resnet18|$hw"); done
  fi
  printf "  %-20s %6s %12s %10s %12s %7s %10s %7s\n" network size "import s" "tl img/s" onnxruntime ratio PyTorch ratio
  for m in "${models[@]}"; do
    local name stem hw
    IFS='|' read -r name stem hw <<< "$m"
    local t0 t1; t0=$(python3 -c 'import time; print(time.perf_counter())')
    tl-tensor convert -q "$OUT/${stem}_$hw.onnx" "$OUT/${stem}_$hw.tlm"
    t1=$(python3 -c 'import time; print(time.perf_counter())')
    local imp; imp=$(python3 -c "print(f'{$t1-$t0:.2f}')")
    local tl; tl=$(tl-bench infer "$OUT/${stem}_$hw.tlm" 32 | cut -f2)
    local o=- r1=- pt=- r2=-
    if [ $haveort = 1 ]; then
      o=$(python3 "$ROOT/Tests/bench/peers_pipeline.py" ortrand "$OUT/${stem}_$hw.onnx" 32 3 $hw $hw | cut -f2)
      r1=$(python3 -c "print(f'{$tl/$o:.2f}')")
    fi
    if [ -f "$OUT/torch_resnet_$hw.txt" ] && [ $stem = resnet18 ]; then
      pt=$(cut -f2 "$OUT/torch_resnet_$hw.txt"); r2=$(python3 -c "print(f'{$tl/$pt:.2f}')")
    fi
    printf "  %-20s %6s %12s %10.1f %12s %7s %10s %7s\n" "$name" "${hw}x$hw" "$imp" "$tl" "$o" "$r1" "$pt" "$r2"
  done
  echo "  (import s: tl-tensor convert of the .onnx to a .tlm, whole command; ResNet-18 is 45 MB. Targets: >= 0.8x onnxruntime, >= PyTorch)"
  rm -f "$OUT"/effnet_* "$OUT"/resnet18_* "$OUT"/torch_resnet_*
}

for s in $SECTIONS; do
  "bench_$s"
  echo
done
