#!/usr/bin/env bash
# The results tables: target test accuracy (%), then source test accuracy after target training
# (forgetting), mean ± sample standard deviation over seeds; "—" where a method's network does
# not answer the source task (training from scratch on the target).
# Usage: METHODS="..." SIZES="..." SEEDS="..." bash table.sh OUT_DIR ARCH
set -euo pipefail
out=$1 arch=$2
nseeds=$(wc -w <<< "$SEEDS")
table() {  # DIR
  printf "| labels per class |"; for m in $METHODS; do printf " %s |" "$m"; done; echo
  printf "|---:|"; for m in $METHODS; do printf -- "---:|"; done; echo
  for n in $SIZES; do
    printf "| %s |" "$n"
    for m in $METHODS; do
      if [ ! -e "$1/$m-$n-$(set -- $SEEDS; echo "$1")" ]; then printf " — |"; continue; fi
      for s in $SEEDS; do cat "$1/$m-$n-$s"; done | awk '{ x[NR] = $1; s += $1 } END {
        m = s / NR; v = 0; for (i = 1; i <= NR; i++) v += (x[i] - m) ^ 2
        if (NR > 1) printf " %.1f ± %.1f |", m, sqrt(v / (NR - 1)); else printf " %.1f |", m }'
    done
    echo
  done
}
echo "Fashion-MNIST, source classes 0-4 -> target classes 5-9, $arch; mean ± std over $nseeds seed(s): $SEEDS"
echo
echo "Target test accuracy (%), 5,000 images:"
echo
table "$out/acc"
echo
echo "Source test accuracy (%) after training on the target, 5,000 images (the source network: $(cat "$out/src/source")):"
echo
table "$out/src"
