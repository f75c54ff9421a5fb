# Shared by the table scripts: where things are, and how to find or make a finished run.
OPENLT=${OPENLT:-.venv/bin/openlt}
SPLITS=${SPLITS:-splits/fmnist_lt}
OUT=${OUT:-runs/table}
[ -f "$SPLITS/manifest.json" ] || $OPENLT split --dataset fashion-mnist --out "$SPLITS"
# the first finished (evaluated) run of a name, or nothing
finished() { for d in "$OUT"/"$1"-*; do if [ -f "$d/metrics.json" ]; then echo "$d"; return; fi; done; }
# run NAME CONFIG [overrides...]: train it unless a finished run of that name exists; print its directory
run() {
  local name=$1 config=$2; shift 2
  if [ -z "$(finished "$name")" ]; then
    $OPENLT train "$config" data.split_dir="$SPLITS" out_dir="$OUT" "$@" --name "$name" --quiet >&2
  fi
  finished "$name"
}
