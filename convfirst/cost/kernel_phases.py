"""Which part of a jitted training step launched each GPU kernel: the forward pass, the backward
pass, the optimizer (optax: update, norms; the concatenation of gradients and parameters into the
optimizer's flat vectors) or the weight EMA. A training step on the GPU is one XLA
executable; its CUPTI kernel list says what ran, and the executable's optimized HLO
(`compiled.as_text()`) says where each kernel came from: XLA names a fusion's kernel after the HLO
instruction, and most instructions carry the op_name of the JAX primitive they came from
(`transpose(...)` marks the backward pass) and a stack frame (source file and function). Kernels
without an HLO instruction of their name, or whose instruction has no metadata (cuBLAS, cuDNN, Pallas,
copies, fusions XLA made itself such as layout transposes), take the phase of the kernel launched
just before them, which is right except at a phase boundary; `named` counts the others.

Why: a step that launches ~2,000 kernels is paced by the host's launches, not by the GPU (run Y,
benchmarks/results/train_step_h200); what to remove first depends on which phase launches them.
"""
from __future__ import annotations

import re
import warnings
from collections import defaultdict

PHASES = ("forward", "backward", "optimizer", "ema", "other")
_OPTIMIZER_FILE = re.compile(r"/optax/(?!losses/)")  # label smoothing runs outside the gradient: not the optimizer
_EMA = ("train/optim.py", "ema_update")
_LAYOUT = ("train/state.py", "ParamLayout.")  # gradients and parameters to the optimizer's flat vectors

_INSTRUCTION = re.compile(r'^\s*(?:ROOT\s+)?%([\w.\-]+) = .*?metadata=\{((?:[^}"]|"[^"]*")*)\}', re.MULTILINE)
_OP_NAME = re.compile(r'op_name="([^"]*)"')
_FRAME = re.compile(r"stack_frame_id=(\d+)")


def _table(hlo_text: str, section: str, pattern: str) -> dict[int, tuple]:
    """One of the module's trailing tables (FileNames, FunctionNames, FileLocations, StackFrames)."""
    m = re.search(rf"^{section}\n((?:\d+ .*\n?)*)", hlo_text, re.MULTILINE)
    rows = {}
    for line in (m.group(1).splitlines() if m else []):
        idx, rest = line.split(" ", 1)
        if (fields := re.search(pattern, rest)) is not None:
            rows[int(idx)] = fields.groups()
    return rows


class _Frames:
    """Stack frame id -> the (file, function) of each frame from it to the outermost."""

    def __init__(self, hlo_text: str):
        self.files = {k: v[0] for k, v in _table(hlo_text, "FileNames", r'"(.*)"').items()}
        self.functions = {k: v[0] for k, v in _table(hlo_text, "FunctionNames", r'"(.*)"').items()}
        self.locations = {k: (int(a), int(b)) for k, (a, b) in _table(
            hlo_text, "FileLocations", r"file_name_id=(\d+) function_name_id=(\d+)").items()}
        self.frames = {k: (int(a), int(b)) for k, (a, b) in _table(
            hlo_text, "StackFrames", r"file_location_id=(\d+) parent_frame_id=(\d+)").items()}

    def chain(self, frame_id: int):
        """The table prints a frame's parent as its id + 1 (0: none), e.g. `3 {... parent_frame_id=3}`
        is called from frame 2."""
        seen = set()
        while frame_id in self.frames and frame_id not in seen:
            seen.add(frame_id)
            location, parent = self.frames[frame_id]
            file_id, function_id = self.locations.get(location, (0, 0))
            yield self.files.get(file_id, ""), self.functions.get(function_id, "")
            frame_id = parent - 1


def phase_of(op_name: str, chain) -> str:
    """The phase of one HLO instruction from its op_name (JAX's transform stack: the backward pass is
    `transpose(jvp(...))`, the forward under `jax.grad` is `jvp(...)`) and, outside the gradient, its
    stack of (file, function) frames."""
    if "transpose(" in op_name:
        return "backward"
    if "jvp(" in op_name:
        return "forward"
    chain = list(chain)
    if any(f.endswith(_EMA[0]) and fn.startswith(_EMA[1]) for f, fn in chain):
        return "ema"
    if any(_OPTIMIZER_FILE.search(f) or (f.endswith(_LAYOUT[0]) and fn.startswith(_LAYOUT[1])) for f, fn in chain):
        return "optimizer"
    return "other"


def kernel_phases(hlo_text: str) -> dict[str, str]:
    """Kernel name (the HLO instruction's name with '.' and '-' as '_') -> phase, for every HLO
    instruction with metadata."""
    frames = _Frames(hlo_text)
    out = {}
    for name, metadata in _INSTRUCTION.findall(hlo_text):
        op = _OP_NAME.search(metadata)
        frame = _FRAME.search(metadata)
        out[re.sub(r"[.\-]", "_", name)] = phase_of(op.group(1) if op else "",
                                                    frames.chain(int(frame.group(1))) if frame else ())
    return out


def phase_breakdown(per_kernel, hlo_text: str) -> list[dict]:
    """[(kernel name, ms), ...] in launch order -> one row per phase (in PHASES order, empty ones left
    out): kernels, ms, share of the kernel time, and how many kernels were matched by name."""
    if "\nStackFrames\n" not in hlo_text:
        warnings.warn("the HLO text has no stack-frame table: optimizer and EMA kernels count as 'other'")
    phases = kernel_phases(hlo_text)
    total = sum(ms for _, ms in per_kernel) or 1.0
    count, ms_by, named = defaultdict(int), defaultdict(float), defaultdict(int)
    current = "other"
    for name, ms in per_kernel:
        if name in phases:
            current = phases[name]
            named[current] += 1
        count[current] += 1
        ms_by[current] += ms
    return [dict(phase=p, kernels=count[p], ms=ms_by[p], share=ms_by[p] / total, named=named[p])
            for p in PHASES if count[p]]


def format_phases(rows: list[dict]) -> str:
    lines = ["  by phase (kernels named after an HLO instruction / all):"]
    for r in rows:
        lines.append(f"  {r['ms']:8.3f} ms {100 * r['share']:5.1f} %  {r['named']:5d} / {r['kernels']:<5d} "
                     f"{r['phase']}")
    return "\n".join(lines)
