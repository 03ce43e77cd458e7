"""Names that cross process boundaries: environment variables (all of them: a test keeps them
here), file names, fixed values."""

from __future__ import annotations

from typing import Literal

# Our own switches.
ENV_DEBUG = "GLMOCR_LF_DEBUG"
# `POINT:FLAGFILE`: a writer reaching pause point POINT creates FLAGFILE and waits there (crash tests)
ENV_PAUSE_AT = "GLMOCR_LF_PAUSE_AT"
# our cache folder (the LLaMA-Factory key table, tokenised datasets): runtime/paths.cache_dir
ENV_CACHE_DIR = "GLMOCR_LF_CACHE_DIR"
# read by the kernels start-up hook in the training process: comma-separated pieces
ENV_KERNELS = "GLMOCR_LF_KERNELS"

# LLaMA-Factory launcher variables (llamafactory/launcher.py, extras/misc.py).
ENV_FORCE_TORCHRUN = "FORCE_TORCHRUN"
ENV_NNODES = "NNODES"
ENV_NODE_RANK = "NODE_RANK"
ENV_NPROC_PER_NODE = "NPROC_PER_NODE"
ENV_MASTER_ADDR = "MASTER_ADDR"
ENV_MASTER_PORT = "MASTER_PORT"
ENV_DISABLE_VERSION_CHECK = "DISABLE_VERSION_CHECK"
ENV_USE_MODELSCOPE_HUB = "USE_MODELSCOPE_HUB"
ENV_CUDA_VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"
ENV_RECORD_VRAM = "RECORD_VRAM"
ENV_OMP_NUM_THREADS = "OMP_NUM_THREADS"
ENV_LOCAL_RANK = "LOCAL_RANK"  # torchrun's, in each rank

# Python, torch and the hub.
ENV_PATH = "PATH"
ENV_PYTHONPATH = "PYTHONPATH"
ENV_HOME = "HOME"
ENV_XDG_CACHE_HOME = "XDG_CACHE_HOME"
ENV_PYTORCH_CUDA_ALLOC_CONF = "PYTORCH_CUDA_ALLOC_CONF"
ENV_HF_HOME = "HF_HOME"
ENV_HF_HUB_CACHE = "HF_HUB_CACHE"
ENV_HF_HUB_OFFLINE = "HF_HUB_OFFLINE"
ENV_HF_ENDPOINT = "HF_ENDPOINT"

# GLM-OCR.
TEMPLATE = "glm_ocr"
MODEL_TYPE = "glm_ocr"
HF_MODEL_ID = "zai-org/GLM-OCR"
MODELSCOPE_MODEL_ID = "ZhipuAI/GLM-OCR"
TASK_PROMPTS = {
    "text": "Text Recognition:",
    "table": "Table Recognition:",
    "formula": "Formula Recognition:",
}
IMAGE_PLACEHOLDER = "<image>"
TASKS: tuple[str, ...] = tuple(TASK_PROMPTS)

# Closed sets the library's parameters are typed by and the CLI offers as choices (here, not in
# the modules that use them, so `--help` imports nothing heavy to list them).
Hub = Literal["hf", "modelscope"]
HUBS: tuple[Hub, ...] = ("hf", "modelscope")
Method = Literal["lora", "full"]
METHODS: tuple[Method, ...] = ("lora", "full")
Protocol = Literal["ours", "omnidocbench"]  # how eval scores: ours, or OmniDocBench's rules
PROTOCOLS: tuple[Protocol, ...] = ("ours", "omnidocbench")
LinkMode = Literal["symlink", "hardlink", "copy"]  # how `data register` stages images
LINK_MODES: tuple[LinkMode, ...] = ("symlink", "hardlink", "copy")

# LLaMA-Factory defaults we reason about (hparams/model_args.py).
LF_DEFAULT_IMAGE_MAX_PIXELS = 768 * 768
LF_DEFAULT_IMAGE_MIN_PIXELS = 32 * 32
LF_DEFAULT_CUTOFF_LEN = 2048
# transformers' TrainingArguments defaults, which LLaMA-Factory keeps
HF_DEFAULT_TRAIN_BATCH = 8
HF_DEFAULT_EPOCHS = 3.0

DATASET_INFO = "dataset_info.json"
# The data folder when none is given: LLaMA-Factory's dataset_dir default, and where `init` puts it.
DATA_DIR = "data"

# Files glmocr-lf writes beside a run.
TRAIN_YAML = "glmocr_lf_train.yaml"
EXPORT_YAML = "glmocr_lf_export.yaml"
TRAIN_LOG = "train.log"  # llamafactory-cli's whole output, beside the run
EXPORT_LOG = "glmocr_lf_export.log"
FAILURE_TAIL_LINES = 30  # of that output, shown when the child fails

# transformers' TensorBoard callback reads its log directory from here (logging_dir is deprecated in 5.x).
ENV_TENSORBOARD_LOGGING_DIR = "TENSORBOARD_LOGGING_DIR"

# A dataset name (dataset_info.json key, `dataset:` entry): ASCII, as LLaMA-Factory's folders and
# our staged files are named after it.
DATASET_NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
DATASET_NAME_RULE = "use ASCII letters, digits, '_', '-' and '.'"
