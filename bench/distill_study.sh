#!/usr/bin/env bash
# The distillation study of docs/results.md ("Does distillation pay?"), resumable: every
# stage skips when its output exists, so a later session reruns this to go on.
#   bash bench/distill_study.sh [SEEDS...]    (from the project root; default seeds 0 1 2)
#   RECIPES="student_distill_t4" bash bench/distill_study.sh 0 1 2   (other students, same data)
# 1. k = 2 folds of Twitter-2015 train and a transfer set of each held-out half (the posts
#    + 5 variants each): cheap, so they run first and a broken input shows at once.
# 2. The reference recipe trained on each fold's training half (results/mulcot_cpu_fold{0,1});
#    each labels the other half's transfer set (soft-targets); both joined: the
#    out-of-fold set.
# 3. The fast student distilled from it and its hard-label control, seeds interleaved.
# Needs ../shared/data (or DATA_DIR); corpora under CORPUS (default corpus/).
set -euo pipefail
PY=${PY:-.venv/bin/python}
DATA_DIR=${DATA_DIR:-../shared/data}
CORPUS=${CORPUS:-corpus}
SEEDS=("${@:-0 1 2}")
T=$CORPUS/twitter2015
log() { echo "[study $(date -u +%H:%M:%S)] $*" >&2; }

[ -f $T/sentence/train.spacy ] || $PY -m spacy_mulcot convert twitter "$DATA_DIR/twitter2015" $T
[ -f $T/folds/folds.json ] || $PY -m spacy_mulcot folds $T/sentence/train.spacy $T/folds --k 2 --seed 0
V=$CORPUS/vectors/twitter2015-all-MiniLM-L6-v2-64
[ -d $V/vocab ] || $PY -m spacy_mulcot static-vectors all-MiniLM-L6-v2 $V --dims 64 \
  --corpus $T/sentence/train.spacy --corpus $T/sentence/dev.spacy

for i in 0 1; do
  [ -f $T/transfer/fold-$i.spacy ] || { log "transfer set of held-out fold $i";
    $PY -m spacy_mulcot transfer-set $T/folds/fold-$i/heldout.spacy $T/transfer/fold-$i.spacy --factor 5 --seed $i; }
done
for i in 0 1; do
  log "fold teacher $i"
  $PY -m spacy_mulcot experiment mulcot_cpu_fold$i --seeds 0 --corpus-dir $CORPUS
done
model_of() {  # the trained model of a results record
  $PY -c "import json,sys; print(json.load(open(sys.argv[1]))['cache'] + '/training/model-best')" "$1"
}
oof_set() {  # $1: the joined set (oof-soft, oof-soft-tags); $2: soft-targets' --no-tags / --tags
  [ -f $T/transfer/$1.spacy ] && return 0
  local parts=() i out
  for i in 0 1; do
    out=$T/transfer/fold-$i-${1#oof-}.spacy
    if [ ! -f $out ]; then
      log "$1: labels of held-out fold $i"
      $PY -m spacy_mulcot soft-targets "$(model_of results/mulcot_cpu_fold$i/seed-0.json)" \
        $T/transfer/fold-$i.spacy $out --batch-size 32 $2
    fi
    parts+=($out)
  done
  $PY -m spacy_mulcot concat $T/transfer/$1.spacy "${parts[@]}"
}
oof_set oof-soft --no-tags
# The same set with the fold teachers' BIO tag logits too (recipe student_distill_tags).
if [[ " ${RECIPES:-} " == *"_tags "* ]]; then
  oof_set oof-soft-tags --tags
fi

# The chain-writing student (recipe student_distill_chains): Twitter-2015 has teacher chains
# for dev and test only, so its chains come from the joint split's 70% of dev, labelled by
# fold teacher 0 (neither fold teacher saw dev) and joined to the out-of-fold set.
if [[ " ${RECIPES:-} " == *"_chains "* ]]; then
  oof_set oof-soft-tags --tags
  C=$T/transfer/oof-soft-tags-chains.spacy
  if [ ! -f $C ]; then
    [ -f $T/joint/train.spacy ] || $PY -m spacy_mulcot split $T/sentence/dev.spacy $T/joint \
      --add $T/sentence/train.spacy --holdout 0.3 --seed 0
    $PY -m spacy_mulcot concat $T/transfer/dev70.spacy $T/joint/train.spacy --exclude $T/sentence/train.spacy
    $PY -m spacy_mulcot soft-targets "$(model_of results/mulcot_cpu_fold0/seed-0.json)" \
      $T/transfer/dev70.spacy $T/transfer/dev70-soft-tags.spacy --batch-size 32 --tags
    $PY -m spacy_mulcot concat $C $T/transfer/oof-soft-tags.spacy $T/transfer/dev70-soft-tags.spacy
  fi
fi

for seed in ${SEEDS[@]}; do
  for recipe in ${RECIPES:-student_distill student_control}; do
    log "$recipe seed $seed"
    $PY -m spacy_mulcot experiment $recipe --seeds $seed --corpus-dir $CORPUS
  done
done
log "done"
