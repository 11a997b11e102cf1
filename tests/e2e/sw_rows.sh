# Sourced by the distillation e2e scripts (after setting bin, tmp and data, the reference set):
# rows of "NAME NFE SW" in $tmp/rows.txt, each SW the mean sliced Wasserstein distance to $data of
# four draws of 2,000 (sampling seeds 1-4); `sw_fresh DIST` adds the row "fresh-data 0 SW" of four
# fresh draws of the toy set (data seeds 11-14), the floor every ratio is taken against.
: >"$tmp/rows.txt"
sw_of() {  # sw_of SAMPLES.h5 -> the sliced Wasserstein distance to $data
  "$UNIDIFF_PYTHON" -c "import json, sys; print(json.loads(sys.argv[1])['sliced_wasserstein'])" \
    "$("$bin" eval --samples="$1" --reference="$data")"
}
sw_mean() {  # sw_mean A B C D -> their mean
  "$UNIDIFF_PYTHON" -c "import sys; print(sum(map(float, sys.argv[1:])) / len(sys.argv[1:]))" "$@"
}
sw_measure() {  # sw_measure NAME NFE SAMPLE_ARGS...
  local name=$1 nfe=$2 k; shift 2
  local v=()
  for k in 1 2 3 4; do
    "$bin" sample "$@" --num=2000 --seed=$k --out="$tmp/s.h5" >/dev/null 2>&1
    v+=("$(sw_of "$tmp/s.h5")")
  done
  echo "$name $nfe $(sw_mean "${v[@]}")" >>"$tmp/rows.txt"
}
sw_fresh() {  # sw_fresh DIST
  local k v=()
  for k in 1 2 3 4; do
    "$bin" data toy --dist="$1" --num=2000 --seed=$((10 + k)) --out="$tmp/fresh$k.h5" >/dev/null 2>&1
    v+=("$(sw_of "$tmp/fresh$k.h5")")
  done
  echo "fresh-data 0 $(sw_mean "${v[@]}")" >>"$tmp/rows.txt"
}
