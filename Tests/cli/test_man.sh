# Man pages: lint-clean, one per command, and every option in --help is documented.
if command -v groff >/dev/null; then
  for m in man/*.[157]; do
    out=$(groff -man -ww -z "$m" 2>&1)
    [ -z "$out" ] && ok || bad "groff lint $m: $out"
  done
else skipped "man page lint: groff is not installed"; fi
for cmd in tl-tensor tl-train tl-extract tl-eval; do
  [ -f "man/$cmd.1" ] && ok || bad "man/$cmd.1 missing"
  subs=$("$cmd" --help | awk '/^Subcommands:/{f=1;next} f&&/^  [a-z]/{print $1} f&&/^$/{if(n++)exit}')
  for s in "" $subs; do
    for opt in $("$cmd" $s --help | grep -oE -- '--[a-z][a-z-]+' | sort -u); do
      grep -qF -- "$(printf '%s' "$opt" | sed 's/-/\\-/g')" "man/$cmd.1" && ok || bad "$cmd $s: $opt is in --help but not in man/$cmd.1"
    done
  done
done
[ -f man/tl-format.5 ] && ok || bad "man/tl-format.5 missing"
