#!/usr/bin/env bash
# The demo `make demo` runs: everything on the Fashion-MNIST sample bundled in the repo.
# Each later tl command extends this script. Usage: TL_BIN=.build/release bash examples/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${TL_BIN:-.build/release}
export PATH=$PWD/$BIN:$PATH
S=examples/data/fmnist-sample
O=examples/out
mkdir -p "$O"

echo "== 1. IDX images + labels + class names -> one tl-format stream"
tl-tensor stack "$S/images-idx3-ubyte.gz" "$S/labels-idx1-ubyte.gz" "$S/classes.txt" -o "$O/sample.tlt"
tl-tensor info "$O/sample.tlt"

echo
echo "== 2. Pixel statistics (the mean/std a network's input normalization uses)"
tl-tensor stats "$O/sample.tlt"

echo
echo "== 3. A stratified, seeded 80/20 split"
tl-tensor split --ratio 0.8 --stratify --seed 1 -o "$O/train.tlt" -o "$O/test.tlt" "$O/sample.tlt"

echo
echo "== 4. Streams compose: first 5 test labels as CSV, 3 test images as PGM files"
tl-tensor head -n 5 "$O/test.tlt" | tl-tensor convert - - --to csv --name y
tl-tensor head -n 3 "$O/test.tlt" | tl-tensor convert - "$O/test-%d.pgm"
ls "$O"/test-*.pgm

echo
echo "== 5. To NumPy: u8 pixels as f32 in an .npz that numpy.load reads"
tl-tensor convert --dtype f32 "$O/train.tlt" "$O/train.npz"
tl-tensor info "$O/train.npz"

echo
echo "== 6. Pretrain a small network (LeNet-5) on the training split; validate on the rest"
tl-train --arch lenet5 --epochs 8 --optimizer adam --lr 0.002 --seed 1 --val "$O/test.tlt" --log "$O/lenet5.csv" "$O/train.tlt" -o "$O/lenet5.tlm"
tl-tensor info "$O/lenet5.tlm" | sed -n '1p;3,$p'
echo "per-epoch log: $O/lenet5.csv"

echo
echo "== 7. Transfer: a source network for classes 0-4, reused for classes 5-9 it never saw"
for part in train test; do
  tl-tensor select -q --classes 0-4 "$O/$part.tlt" -o "$O/source-$part.tlt"
  tl-tensor select -q --classes 5-9 "$O/$part.tlt" -o "$O/target-$part.tlt"
done
tl-train -q --arch lenet5 --epochs 8 --optimizer adam --lr 0.002 --seed 1 "$O/source-train.tlt" -o "$O/source.tlm"
tl-extract --model "$O/source.tlm" --list-layers
echo "-- codes of the last convolutional block for the target images -> a linear classifier:"
tl-extract --model "$O/source.tlm" --layer pool2 "$O/target-train.tlt" | tl-train --linear --standardize -o "$O/target-linear.tlm"
tl-extract -q --model "$O/source.tlm" --layer pool2 "$O/target-test.tlt" | tl-eval --model "$O/target-linear.tlm"
echo
echo "== 8. Fine-tuning: the source network's convolutional layers copied, the rest trained on 20"
echo "      target images per class; and Learning without Forgetting, which keeps the source task"
tl-tensor select -q --per-class 20 --seed 1 "$O/target-train.tlt" -o "$O/target-few.tlt"
tl-train -q --init "$O/source.tlm" --copy ..pool2 --keep-source --epochs 30 --batch 32 --optimizer adam --lr 0.002 --seed 1 \
  "$O/target-few.tlt" -o "$O/target-ft.tlm"
tl-train -q --init "$O/source.tlm" --lwf 1 --epochs 30 --batch 32 --optimizer adam --lr 0.002 --seed 1 \
  "$O/target-few.tlt" -o "$O/target-lwf.tlm"
for m in ft lwf; do
  echo "-- $m: target task $(tl-eval -m "$O/target-$m.tlm" "$O/target-test.tlt" | head -1 | awk '{print $2}')," \
       "source task $(tl-eval -m "$O/target-$m.tlm" --task source "$O/source-test.tlt" | head -1 | awk '{print $2}')" \
       "(the source network: $(tl-eval -m "$O/source.tlm" "$O/source-test.tlt" | head -1 | awk '{print $2}'))"
done
echo
echo "The full experiment (all 60,000 images, 10/50/500 labels per class, several seeds, every method):"
echo "  make data && make -C examples/transfer"
