#!/usr/bin/env bash
# One device call of the GPU benchmark: install the carried wheels, build the model and data, run
# the phase's configurations, print the table. Usage: bench/gpu_session.sh PHASE
# Wheels: .gpuwheels/ (git-ignored, passed in `carry`). Results and logs go to $OUT.
set -uo pipefail
PHASE=${1:?phase}
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
W=/tmp/bench; mkdir -p $W
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
exec > >(tee -a "$OUT/session.log") 2>&1
t0=$(date +%s)
# a warm machine (the next call within its 30 s) keeps /tmp: the wheels are installed once
[ -f /tmp/site/.installed ] || { python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpuwheels/*.whl && touch /tmp/site/.installed; } || exit 1
export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH
echo "install: $(( $(date +%s) - t0 ))s"
python3 - <<'PY'
import importlib, torch
for m in ("click", "pydantic", "yaml", "rich", "packaging", "filelock", "PIL", "transformers", "tokenizers",
          "llamafactory", "datasets", "trl", "peft", "accelerate", "omegaconf", "torchvision", "torchaudio"):
    mod = importlib.import_module(m); print(m, getattr(mod, "__version__", "?"), mod.__file__)
print("torch", torch.__version__, torch.cuda.device_count(), torch.cuda.get_device_name(0))
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
nproc
B="python3 bench/gpu_train.py"
[ -f $W/model/bench_meta.json ] || $B prepare --work $W | tee "$OUT/prepare.json"
# the no-replica variant (issue 20): 500 distinct synthetic pages, the same model
case $PHASE in check|quality-*) [ -f $W/data_distinct/dataset_info.json ] ||
  $B prepare --work $W --data data_distinct --samples 500 --pages 500 | tee -a "$OUT/prepare.json";; esac
echo "prepared: $(( $(date +%s) - t0 ))s"
# warm the bytecode once so no run pays for compiling transformers (installed with --no-compile)
[ "$PHASE" = persist ] || [ "$PHASE" = kcurves ] || python3 -c "import llamafactory.train.tuner, glmocr_lf.cli, transformers.models.glm_ocr.modeling_glm_ocr, transformers.models.glm46v.processing_glm46v" 2>/dev/null; echo "pyc warm: $(( $(date +%s) - t0 ))s"
snap() { $B report --work $W --warmup ${WARMUP:-5} > "$OUT/table.md"; cp $W/summary.json "$OUT/" 2>/dev/null; tar czf "$OUT/results.tgz" -C $W results logs 2>/dev/null; }
run() { $B run --work $W --logs $W/logs "$@"; snap; }
# LLaMA-Factory's key table (glmocr_lf/config/lfkeys.py) is built once per installed version, ~10 s, and
# cached; every run of ours gets it warm, as a user has it from the second command on. The tokenised
# data cache stays cold: each run has its own cache folder.
[ -n "$(ls $W/cache/keys/lf-keys-*.json 2>/dev/null)" ] ||
  GLMOCR_LF_CACHE_DIR=$W/cache/keys python3 -c "from glmocr_lf.config.lfkeys import load_table; load_table()"
ours() { local name=$1; shift; mkdir -p $W/cache/$name; cp -n $W/cache/keys/lf-keys-*.json $W/cache/$name/ 2>/dev/null
  run --name $name --env GLMOCR_LF_CACHE_DIR=$W/cache/$name "$@"; }
# quality runs: 2 epochs, the same 10% held out, evaluated after each epoch (gpu_train.py EVAL_OVERRIDES)
pair() {  # METHOD DATA TAG [ours options...]: the vendor recipe, then ours with its defaults, then the table
  local m=$1 d=$2 tag=$3; shift 3
  run --name q-$m-vendor-$tag --vendor $m --epochs 2 --data $d --timeout 300
  ours q-$m-ours-$tag --ours $m --epochs 2 --data $d --timeout 240 "$@"
  $B quality --work $W q-$m-vendor-$tag:q-$m-ours-$tag | tee -a "$OUT/quality.md"
}
case $PHASE in
  check)  # seconds: the carried stack imports, the GPU is seen, the model and both data variants build
    python3 -m glmocr_lf --version; python3 bench/gpu_train.py quality --help | head -2
    cp $W/data_distinct/cosyn_chemical.json "$OUT/data_distinct.json"
    ;;
  quality-lora|quality-full)  # issue 20: vendor vs ours (defaults), bench data then its no-replica variant
    M=${PHASE#quality-}
    pair $M data rep
    pair $M data_distinct dist
    ;;
  launch)  # issue 20: where each launch goes, phase by phase (bench/launch_phases.py), up to the first step
    # cold runs (their own tokenisation cache, as every quality run), twice each; then ours warm: the
    # second run on the same data reuses the first one's tokenized_path
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    for i in 1 2; do for m in lora full; do
      left 480 && run --name l-$m-vendor-$i --vendor $m --launch-only --timeout 150
      left 500 && ours l-$m-ours-$i --ours $m --launch-only --timeout 120
    done; done
    left 520 && ours l-lora-ours-warm --ours lora --launch-only --timeout 120 --env GLMOCR_LF_CACHE_DIR=$W/cache/l-lora-ours-1
    $B launch --work $W vendor-lora=l-lora-vendor-1,l-lora-vendor-2 ours-lora=l-lora-ours-1,l-lora-ours-2 \
      ours-lora-warm=l-lora-ours-warm vendor-full=l-full-vendor-1,l-full-vendor-2 \
      ours-full=l-full-ours-1,l-full-ours-2 | tee "$OUT/launch.md"
    ;;
  quality-extra)  # memory budgets over a whole epoch (every sample seen), then the bucketed-sampler lever
    K="python3 bench/kernels_check.py"
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    ours q-lora-budget8 --ours lora --steps 32 -- --memory-budget 8
    ours q-full-budget24 --ours full --steps 63 -- --memory-budget 24
    $K budget --work $W q-lora-budget8:8 q-full-budget24:24 | tee -a "$OUT/kernels.jsonl"
    for tag in rep dist; do
      d=$([ $tag = rep ] && echo data || echo data_distinct)
      left 420 && ours q-lora-b4-$tag --ours lora --epochs 2 --data $d --timeout 200 --env GLMOCR_BENCH_BUCKETS=4
      left 470 && ours q-full-b4-$tag --ours full --epochs 2 --data $d --timeout 200 --env GLMOCR_BENCH_BUCKETS=4
    done
    ;;
  smoke)
    run --name vendor-lora-smoke --vendor lora --steps 12
    # calibration for fit.py: memory and speed of single levers (raw llamafactory-cli)
    OMP=(--env OMP_NUM_THREADS=1 --env PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True)
    run --name cal-lora-16x1 --vendor lora --steps 30 "${OMP[@]}" -- disable_gradient_checkpointing=true per_device_train_batch_size=16 gradient_accumulation_steps=1 tokenized_path=$W/tok
    run --name cal-lora-ckpt-4x4 --vendor lora --steps 12 "${OMP[@]}" -- tokenized_path=$W/tok
    run --name cal-lora-ckpt-2x8 --vendor lora --steps 12 "${OMP[@]}" -- per_device_train_batch_size=2 gradient_accumulation_steps=8 tokenized_path=$W/tok
    run --name cal-full-8x1 --vendor full --steps 30 "${OMP[@]}" -- disable_gradient_checkpointing=true per_device_train_batch_size=8 gradient_accumulation_steps=1 tokenized_path=$W/tok
    run --name cal-full-ckpt-8x1 --vendor full --steps 12 "${OMP[@]}" -- per_device_train_batch_size=8 gradient_accumulation_steps=1 tokenized_path=$W/tok
    run --name cal-lora-16x1-compile --vendor lora --steps 30 --timeout 200 "${OMP[@]}" -- disable_gradient_checkpointing=true per_device_train_batch_size=16 gradient_accumulation_steps=1 tokenized_path=$W/tok torch_compile=true
    ;;
  side)  # side by side on one GPU: vendor YAMLs (raw llamafactory-cli) vs glmocr-lf train, then the budgets
    # loss curves of the kernels against none: phase `levers` (logging every step costs a sync per step)
    K="python3 bench/kernels_check.py"
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    # ours as a long run trains (`--compile on`: auto compiles from 500 (full) / 2,700 (LoRA) steps);
    # steps that compiled are reported apart, samples/s is the steady state without them
    run --name vendor-lora --vendor lora --steps 55
    ours ours-lora --ours lora --steps 55 -- --compile on
    run --name vendor-full --vendor full --steps 55
    ours ours-full --ours full --steps 55 -- --compile on
    if left 470; then
      ours ours-lora-budget8 --ours lora --steps 20 -- --memory-budget 8
      ours ours-full-budget24 --ours full --steps 20 -- --memory-budget 24
      $K budget --work $W ours-lora-budget8:8 ours-full-budget24:24 | tee -a "$OUT/kernels.jsonl"
    fi
    ;;
  multi)  # 2 GPUs: 1-GPU reference, DDP, ZeRO-2, ZeRO-3, two torchrun nodes
    ours m-ours-lora-1gpu --ours lora --steps 55 -- --gpus 0
    ours m-ours-lora-ddp2 --ours lora --steps 55 -- --gpus 0,1
    ours m-ours-lora-z2x2 --ours lora --steps 55 -- --gpus 0,1 --deepspeed z2
    ours m-ours-lora-z3x2 --ours lora --steps 30 -- --gpus 0,1 --deepspeed z3
    $B nodes --work $W --logs $W/logs --steps 20; snap
    $B verify --work $W --adapter $W/runs/ours-lora-2nodes-node0 | tee "$OUT/verify.json"
    ;;
  persist)  # 2 GPUs again, with persistent dataloader workers
    ours p-ours-lora-1gpu --ours lora --steps 55 -- --gpus 0
    ours p-ours-lora-z2x2 --ours lora --steps 55 -- --gpus 0,1 --deepspeed z2
    ours p-ours-lora-ddp2 --ours lora --steps 55 -- --gpus 0,1
    ;;
  kernels)  # fused kernels (glmocr_lf/kernels): op checks, one batch, loss curves on vs off
    K="python3 bench/kernels_check.py"
    $K ops 2>&1 | tee -a "$OUT/kernels.jsonl"; [ "${PIPESTATUS[0]}" = 0 ] || exit 1
    $K model --work $W 2>&1 | tee -a "$OUT/kernels.jsonl"
    ours k-lora-on --ours lora --steps 55 -- logging_steps=1
    ours k-lora-off --ours lora --steps 55 -- logging_steps=1 --kernels none
    ours k-full-on --ours full --steps 55 -- logging_steps=1
    ours k-full-off --ours full --steps 55 -- logging_steps=1 --kernels none
    $K curves --work $W k-lora-on:k-lora-off k-full-on:k-full-off | tee -a "$OUT/kernels.jsonl"
    if [ $(( $(date +%s) - t0 )) -lt 430 ]; then
      ours k-lora-budget8 --ours lora --steps 20 -- --memory-budget 8
      ours k-full-budget24 --ours full --steps 20 -- --memory-budget 24
      $K budget --work $W k-lora-budget8:8 k-full-budget24:24 | tee -a "$OUT/kernels.jsonl"
    fi
    ;;
  kcurves)  # loss curves of the default kernels (fused cross-entropy included) against none; budgets
    K="python3 bench/kernels_check.py"
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    ours c-lora-all --ours lora --steps 55 -- logging_steps=1
    ours c-lora-none --ours lora --steps 55 -- logging_steps=1 --kernels none
    ours c-full-all --ours full --steps 55 -- logging_steps=1
    ours c-full-none --ours full --steps 55 -- logging_steps=1 --kernels none
    $K curves --work $W c-lora-all:c-lora-none c-full-all:c-full-none | tee -a "$OUT/kernels.jsonl"
    if left 290; then
      ours c-lora-budget8 --ours lora --steps 20 -- --memory-budget 8
      ours c-full-budget24 --ours full --steps 20 -- --memory-budget 24
      $K budget --work $W c-lora-budget8:8 c-full-budget24:24 | tee -a "$OUT/kernels.jsonl"
    fi
    ;;
  profile)  # where a step's GPU time goes (torch.profiler in the probe), and the vision attention piece
    K="python3 bench/kernels_check.py"
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    $K ops 2>&1 | tee -a "$OUT/kernels.jsonl"
    VA=GLMOCR_LF_KERNELS=rms_norm,swiglu,rope,flce,vision_attn
    ours pf-full --ours full --steps 26 --env GLMOCR_BENCH_PROFILE=20:4
    ours pf-full-va --ours full --steps 26 --env GLMOCR_BENCH_PROFILE=20:4 --env $VA
    ours pf-lora-va --ours lora --steps 26 --env GLMOCR_BENCH_PROFILE=20:4 --env $VA
    cp $W/probe/*.profile.txt "$OUT/" 2>/dev/null; head -14 $W/probe/*.profile.txt
    ours sp-full --ours full --steps 55
    ours sp-full-va --ours full --steps 55 --env $VA
    left 440 && ours sp-lora-va --ours lora --steps 55 --env $VA
    left 480 && ours sp-lora --ours lora --steps 55
    left 520 && ours sp-full-va-tf32 --ours full --steps 55 --env $VA -- tf32=true
    ;;
  levers)  # CPU-side levers (the profile showed the GPU ~40% idle): candidate pieces + no NaN-filter sync
    K="python3 bench/kernels_check.py"
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    $K ops 2>&1 | tee -a "$OUT/kernels.jsonl"
    VA=GLMOCR_LF_KERNELS=rms_norm_liger,swiglu,rope,flce,vision_attn
    TN=GLMOCR_LF_KERNELS=rms_norm,swiglu,rope,flce,vision_attn
    NAN=logging_nan_inf_filter=false
    ours lv-full-cand --ours full --steps 55 --env $TN -- logging_steps=1 $NAN
    ours lv-full-none --ours full --steps 55 -- logging_steps=1 --kernels none
    ours lv-lora-cand --ours lora --steps 55 --env $TN -- logging_steps=1 $NAN
    ours lv-lora-none --ours lora --steps 55 -- logging_steps=1 --kernels none
    $K curves --work $W lv-full-cand:lv-full-none lv-lora-cand:lv-lora-none | tee -a "$OUT/kernels.jsonl"
    left 480 && ours lv-full-va-nan --ours full --steps 55 --env $VA -- logging_steps=1 $NAN
    left 530 && ours lv-full-syncs --ours full --steps 23 --env $TN --env GLMOCR_BENCH_SYNCS=20 -- $NAN
    cp $W/probe/*.syncs.txt "$OUT/" 2>/dev/null; cat $W/probe/*.syncs.txt
    ;;
  compile)  # the `compile` piece (torch.compile of the text decoder layers) on top of the defaults
    K="python3 bench/kernels_check.py"
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    CMP=GLMOCR_LF_KERNELS=rms_norm,swiglu,rope,flce,vision_attn,vision_positions,compile
    ours co-full-def --ours full --steps 55 -- logging_steps=1
    ours co-full-cmp --ours full --steps 55 --timeout 300 --env $CMP --env TORCH_LOGS=recompiles -- logging_steps=1
    $K curves --work $W co-full-cmp:co-full-def | tee -a "$OUT/kernels.jsonl"
    grep -c "Recompiling" $W/runs/co-full-cmp/train.log
    left 400 && run --name vendor-full --vendor full --steps 55
    left 330 && ours co-lora-cmp --ours lora --steps 55 --timeout 240 --env $CMP --env TORCH_LOGS=recompiles
    grep -c "Recompiling" $W/runs/co-lora-cmp/train.log
    ;;
  ccheck)  # compile: LoRA loss curve against no compile; with gradient checkpointing and the memory budgets
    K="python3 bench/kernels_check.py"
    left() { [ $(( $(date +%s) - t0 )) -lt "$1" ]; }
    ours cc-lora-def --ours lora --steps 55 -- logging_steps=1 --compile off
    ours cc-lora-cmp --ours lora --steps 55 -- logging_steps=1 --compile on
    $K curves --work $W cc-lora-cmp:cc-lora-def | tee -a "$OUT/kernels.jsonl"
    ours cc-lora-budget8 --ours lora --steps 30 -- --memory-budget 8 --compile on
    ours cc-full-budget24 --ours full --steps 30 -- --memory-budget 24 --compile on
    $K budget --work $W cc-lora-budget8:8 cc-full-budget24:24 | tee -a "$OUT/kernels.jsonl"
    left 500 && ours cc-lora-budget8-off --ours lora --steps 30 -- --memory-budget 8 --compile off
    ;;
  *) echo "unknown phase $PHASE"; exit 2;;
esac
snap; cat "$OUT/table.md"
echo "session: $(( $(date +%s) - t0 ))s"
