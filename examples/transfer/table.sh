#!/usr/bin/env bash
# The results table: target test accuracy (%), mean ± sample standard deviation over seeds.
# Usage: METHODS="..." SIZES="..." SEEDS="..." bash table.sh ACC_DIR ARCH
set -euo pipefail
dir=$1 arch=$2
nseeds=$(wc -w <<< "$SEEDS")
echo "Fashion-MNIST, source classes 0-4 -> target classes 5-9, $arch; target test accuracy (%), 5,000 images,"
echo "mean ± std over $nseeds seed(s): $SEEDS"
echo
printf "| labels per class |"; for m in $METHODS; do printf " %s |" "$m"; done; echo
printf "|---:|"; for m in $METHODS; do printf -- "---:|"; done; echo
for n in $SIZES; do
  printf "| %s |" "$n"
  for m in $METHODS; do
    for s in $SEEDS; do cat "$dir/$m-$n-$s"; done | awk '{ x[NR] = $1; s += $1 } END {
      m = s / NR; v = 0; for (i = 1; i <= NR; i++) v += (x[i] - m) ^ 2
      if (NR > 1) printf " %.1f ± %.1f |", m, sqrt(v / (NR - 1)); else printf " %.1f |", m }'
  done
  echo
done
