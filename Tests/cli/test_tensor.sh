# tl-tensor at the command line. Sourced by Tests/cli/run.sh (helpers: expect, err_has, ok, bad).
IMG=$SAMPLE/images-idx3-ubyte.gz
LAB=$SAMPLE/labels-idx1-ubyte.gz

# --help and --version: stdout, exit 0, for the command and every subcommand.
expect 0 "help" -- tl-tensor --help
grep -q "^Usage: tl-tensor" "$T/out" && ok || bad "help text"
expect 0 "version" -- tl-tensor --version
[ "$(cat "$T/out")" = "tl-tensor (tl) 0.1.0" ] && ok || bad "version line: $(cat "$T/out")"
for s in info cat head slice split convert stats stack; do
  expect 0 "$s --help" -- tl-tensor $s --help
  grep -q "^Usage: tl-tensor $s" "$T/out" && ok || bad "$s help text"
done

# The sample: IDX gzip in, tl-format out, through a pipe.
tl-tensor stack "$IMG" "$LAB" "$SAMPLE/classes.txt" > "$T/sample.tlt" && ok || bad "stack sample"
expect 0 "info" -- tl-tensor info --json "$T/sample.tlt"
python3 - "$T/out" <<'PY' && ok || bad "info --json content"
import json, sys
d = json.loads(open(sys.argv[1]).read())
t = {x["name"]: x for x in d["tensors"]}
assert t["x"]["shape"] == [2000, 28, 28] and t["x"]["dtype"] == "u8", t
assert t["y"]["shape"] == [2000], t
assert t["names"]["names"][0] == "T-shirt/top" and len(t["names"]["names"]) == 10
PY

# Round trips through every format that holds the tensor give identical bytes.
tl-tensor convert "$IMG" "$T/a.npy" && tl-tensor convert "$T/sample.tlt" "$T/b.npy" --name x \
  && cmp -s "$T/a.npy" "$T/b.npy" && ok || bad "IDX -> npy == tlt -> npy"
tl-tensor convert "$T/a.npy" "$T/c.idx.gz" && tl-tensor convert "$T/c.idx.gz" "$T/d.npy" && cmp -s "$T/a.npy" "$T/d.npy" && ok || bad "npy -> idx.gz -> npy"
zcat "$T/c.idx.gz" | cmp -s - <(zcat "$IMG") && ok || bad "our gzip IDX equals the original after gunzip"
tl-tensor convert "$T/sample.tlt" "$T/s.npz" && tl-tensor convert "$T/s.npz" - | tl-tensor convert - "$T/s2.npz" && cmp -s "$T/s.npz" "$T/s2.npz" && ok || bad "npz round trip"
tl-tensor head -n 3 "$T/sample.tlt" | tl-tensor convert - "$T/h-%02d.pgm" && [ -f "$T/h-02.pgm" ] && ! [ -f "$T/h-03.pgm" ] && ok || bad "pgm pattern output"
tl-tensor convert "$T" "$T/imgs.npy" --name x 2>/dev/null; tl-tensor head -n 3 "$T/a.npy" > "$T/h3.tlt"
tl-tensor convert "$T/h3.tlt" "$T/h3.npy" && python3 -c "
import numpy as np, sys
a = np.load('$T/h3.npy'); b = np.load('$T/imgs.npy')
assert b.shape == (3, 1, 28, 28) and (a == b[:, 0]).all()" && ok || bad "directory of PGM images reads back as [N,1,H,W]"
tl-tensor convert "$T/sample.tlt" "$T/y.csv" --name y && [ "$(head -2 "$T/y.csv" | tr '\n' ' ')" = "9 2 " ] && ok || bad "labels to CSV"
tl-tensor convert "$T/y.csv" - | tl-tensor info --json | grep -q '"dtype":"i64","meta"\|"dtype":"i64"' && ok || bad "CSV labels read as i64 y"

# dtype conversion.
tl-tensor convert --dtype f32 "$T/sample.tlt" "$T/f.tlt" && tl-tensor info --json "$T/f.tlt" | grep -q '"dtype":"f32"' && ok || bad "--dtype f32"
expect 65 "f32 -> u8 with fractions" -- bash -c "tl-tensor convert --dtype f16 '$T/sample.tlt' - | tl-tensor convert --dtype f32 - - | python3 -c 'import sys; sys.stdout.buffer.write(sys.stdin.buffer.read())' > /dev/null; echo '0.5' | tl-tensor convert --no-header --dtype u8 - '$T/z.npy'"
err_has "does not fit in u8" "fraction to u8 message"

# head, slice, split, stats.
[ "$(tl-tensor slice --rows 10:15 "$T/sample.tlt" | tl-tensor convert - - --to csv --name y | tr '\n' ' ')" = "$(sed -n 11,15p "$T/y.csv" | tr '\n' ' ')" ] && ok || bad "slice rows 10:15"
expect 0 "split" -- tl-tensor split --ratio 0.8 --stratify --seed 3 -o "$T/tr.tlt" -o "$T/te.tlt" "$T/sample.tlt"
python3 - "$T" <<'PY' && ok || bad "split sizes and strata"
import json, subprocess, sys
t = sys.argv[1]
def info(p): return {x["name"]: x for x in json.loads(subprocess.check_output(["tl-tensor", "info", "--json", p]))["tensors"]}
a, b = info(t + "/tr.tlt"), info(t + "/te.tlt")
assert a["x"]["shape"][0] == 1600 and b["x"]["shape"][0] == 400, (a, b)
assert a["y"]["shape"] == [1600] and "names" in a and "names" in b
PY
tl-tensor split --count 100 --seed 3 -o "$T/s1.tlt" -o "$T/s2.tlt" "$T/sample.tlt" -q && tl-tensor split --count 100 --seed 3 -o "$T/s3.tlt" -o "$T/s4.tlt" "$T/sample.tlt" -q && cmp -s "$T/s1.tlt" "$T/s3.tlt" && ok || bad "split is reproducible with a seed"
expect 0 "stats" -- tl-tensor stats --json "$T/sample.tlt"
python3 -c "
import json; d = json.load(open('$T/out'))
assert d['shape'] == [2000, 28, 28] and len(d['channels']) == 1 and 60 < d['all']['mean'] < 90" && ok || bad "stats values"

# Bad input: one line on stderr naming the file (and record), the documented exit code.
expect 66 "missing file" -- tl-tensor info "$T/nope.tlt"
err_has "nope.tlt: cannot open" "missing file message"
head -c 300 "$T/sample.tlt" > "$T/trunc.tlt"
expect 65 "truncated stream" -- tl-tensor info "$T/trunc.tlt"
err_has "trunc.tlt: record 1:" "truncated stream message"
expect 65 "truncated stream on a pipe" -- bash -c "cat '$T/trunc.tlt' | tl-tensor info"
err_has "<stdin>: record 1:" "truncated pipe message"
cp "$T/sample.tlt" "$T/flip.tlt"; printf '\x01' | dd of="$T/flip.tlt" bs=1 seek=5000 conv=notrunc 2>/dev/null
expect 65 "bad checksum" -- tl-tensor cat "$T/flip.tlt" -o "$T/out.tlt"
err_has "payload checksum mismatch" "checksum message"
[ ! -e "$T/out.tlt" ] && ok || bad "no output file after a data error"
printf '1,2,3\n4,5\n' > "$T/ragged.csv"
expect 65 "ragged CSV" -- tl-tensor convert "$T/ragged.csv" "$T/r.npy"
err_has "ragged.csv: line 2: expected 3 fields, found 2" "ragged CSV message"
python3 -c "
import struct, gzip
open('$T/lie.idx','wb').write(struct.pack('>IIII', 0x803, 100, 28, 28) + bytes(784 * 99))" 
expect 65 "IDX lying header" -- tl-tensor convert "$T/lie.idx" "$T/l.npy"
err_has "lie.idx: header:" "IDX lying header message"
expect 64 "unknown option" -- tl-tensor info --frobnicate
err_has "unknown option '--frobnicate'" "unknown option message"
expect 64 "unknown subcommand" -- tl-tensor frob
expect 64 "unknown output format" -- tl-tensor convert "$T/sample.tlt" "$T/out.xyz"
expect 73 "cannot create" -- tl-tensor convert "$T/sample.tlt" "$T/no/such/dir/out.npy"
expect 74 "write error (/dev/full)" -- bash -c "tl-tensor cat '$T/sample.tlt' > /dev/full"
err_has "write failed" "/dev/full message"
expect 74 "write error on text output (/dev/full)" -- bash -c "tl-tensor info '$T/sample.tlt' > /dev/full"

# A closed pipe ends the producer quietly.
tl-tensor convert "$T/sample.tlt" - --to csv --name x 2>"$T/err" | head -1 > /dev/null
[ ! -s "$T/err" ] && ok || bad "| head leaves stderr empty: $(cat "$T/err")"

# Binary output refuses a terminal.
if command -v script >/dev/null; then
  script -qec "tl-tensor cat '$T/sample.tlt'" /dev/null > "$T/tty.out" 2>&1
  grep -q "refusing to write binary data to a terminal" "$T/tty.out" && ok || bad "binary to a terminal: $(head -c 200 "$T/tty.out")"
else skipped "binary-to-terminal test: script(1) is not installed"; fi

# An interrupted run leaves no output file and no temporary file.
mkdir "$T/int"; mkfifo "$T/fifo"
tl-tensor convert "$T/fifo" "$T/int/out.npy" 2>/dev/null &
pid=$!
exec 3>"$T/fifo"; cat "$T/sample.tlt" >&3
sleep 0.5; kill -TERM $pid; wait $pid 2>/dev/null; exec 3>&-
[ -z "$(ls -A "$T/int")" ] && ok || bad "interrupted run left files: $(ls -A "$T/int")"
