"""llama.cpp on our weights: the native peer that benchmarks/generation.py measures beside our engine.

Why llama.cpp: it is the best-known hand-written CPU inference engine, so "ours ÷ llama.cpp" says how far a
pure-PyTorch engine is from native code on the same weights, machine and minute. `make bench` builds
llama-cpp-python for this CPU (`make llamacpp`); without it the benchmark says why and goes on.

Why our own GGUF export rather than llama.cpp's convert_hf_to_gguf.py: that script refuses tokenizers it does
not recognise (it fingerprints them by encoding a test string), and our models have their own. The benchmark
feeds token ids, never text, so the vocabulary only has to have the right size; the weights need llama.cpp's
names and layouts.

    .venv/bin/python benchmarks/llamacpp.py --model src/billionsongs/bundled_model --batches 1,8 --new-tokens 32
    .venv/bin/python benchmarks/llamacpp.py --greedy 8      # llama.cpp's greedy tokens next to transformers'
"""

import argparse
import ctypes
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from billionsongs.model.loading import BUNDLED_MODEL_DIR, load_model

BUILD_LOG = Path(sys.prefix) / "llamacpp-build.log"  # written by `make llamacpp`
TOP_K = 40


def unavailable() -> str | None:
    """None when llama.cpp can run here, else why not, in words for the benchmark's report."""
    try:
        import gguf  # noqa: F401
        import llama_cpp  # noqa: F401
    except Exception as exc:  # a broken build raises OSError from ctypes, not only ImportError
        why = f"{type(exc).__name__}: {exc}"
        log = BUILD_LOG.read_text(errors="replace") if BUILD_LOG.is_file() else ""
        if not log:
            return f"not installed (`make llamacpp` builds it; {why})"
        if "Successfully installed llama-cpp-python" in log:
            return f"installed but does not load ({why})"
        lines = [line.strip() for line in log.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]  # the first is usually the cause
        return f"build failed ({(errors or lines[-1:])[0][:200]}; see {BUILD_LOG})"
    return None


# ----------------------------------------------------------------------------------------------------------
# export


def export_gguf(hf_folder: Path, out: Path, outtype: str = "bf16") -> Path:
    """Write a GPT-2-format folder's model as a llama.cpp "gpt2" GGUF: matrices in `outtype` ("bf16" or
    "f32"), norms and biases fp32.

    That is what convert_hf_to_gguf.py --outtype bf16 (or f32) writes, and the bf16 rounding is torch's, the
    one our engine applies, so both engines multiply by the same weights. f32 is llama.cpp's faster choice
    for batches on a CPU without bf16 arithmetic, which it then converts on every multiply. HF GPT-2 stores
    its Conv1D weights as (in, out); llama.cpp wants (out, in) rows, so those four are transposed, as the
    converter's GPT2Model does.
    """
    import gguf

    if outtype not in ("bf16", "f32"):
        raise ValueError(f"outtype must be bf16 or f32, not {outtype!r}")
    loaded = load_model(str(hf_folder))
    c, weights = loaded.config, loaded.state_dict
    n_ff = weights["h.0.mlp.c_fc.weight"].shape[1]

    writer = gguf.GGUFWriter(out, gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.GPT2])
    writer.add_context_length(c.n_positions)
    writer.add_embedding_length(c.n_embd)
    writer.add_feed_forward_length(n_ff)
    writer.add_block_count(c.n_layer)
    writer.add_head_count(c.n_head)
    writer.add_layer_norm_eps(c.layer_norm_epsilon)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if outtype == "bf16" else gguf.LlamaFileType.ALL_F32)

    # The vocabulary: real token strings where the tokenizer has them, placeholders elsewhere.
    tokens = [f"<unused{i}>" for i in range(c.vocab_size)]
    for text, i in loaded.tokenizer.get_vocab(with_added_tokens=True).items():
        if i < c.vocab_size:
            tokens[i] = text
    merges = json.loads(loaded.tokenizer.to_str())["model"].get("merges") or []
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if i == loaded.eot_id else gguf.TokenType.NORMAL
                            for i in range(c.vocab_size)])
    # llama.cpp refuses a "gpt2" vocabulary without merges and gguf-py drops empty lists: one placeholder
    # merge stands in for a tokenizer that has none (GPT-2 124M shape); text is never tokenized here.
    writer.add_token_merges(merges or [f"{tokens[0]} {tokens[0]}"])
    writer.add_bos_token_id(loaded.eot_id)
    writer.add_eos_token_id(loaded.eot_id)
    writer.add_add_bos_token(False)

    def name(tensor: "gguf.MODEL_TENSOR", suffix: str, block: int | None = None) -> str:
        return gguf.TENSOR_NAMES[tensor].format(bid=block) + suffix

    def matrix(key: str, gguf_name: str, transpose: bool = False) -> None:
        w = (weights[key].t() if transpose else weights[key]).contiguous()
        if outtype == "f32":
            writer.add_tensor(gguf_name, w.float().numpy())
        else:
            bf16 = w.to(torch.bfloat16).view(torch.int16).numpy()
            writer.add_tensor(gguf_name, bf16, raw_dtype=gguf.GGMLQuantizationType.BF16)

    def vector(key: str, gguf_name: str) -> None:
        writer.add_tensor(gguf_name, weights[key].float().numpy())

    def norm(key: str, tensor: "gguf.MODEL_TENSOR", block: int | None = None) -> None:
        vector(f"{key}.weight", name(tensor, ".weight", block))
        vector(f"{key}.bias", name(tensor, ".bias", block))

    def linear(key: str, tensor: "gguf.MODEL_TENSOR", block: int) -> None:
        matrix(f"{key}.weight", name(tensor, ".weight", block), transpose=True)
        vector(f"{key}.bias", name(tensor, ".bias", block))

    T = gguf.MODEL_TENSOR
    matrix("wte.weight", name(T.TOKEN_EMBD, ".weight"))
    matrix("wpe.weight", name(T.POS_EMBD, ".weight"))
    for i in range(c.n_layer):
        norm(f"h.{i}.ln_1", T.ATTN_NORM, i)
        linear(f"h.{i}.attn.c_attn", T.ATTN_QKV, i)
        linear(f"h.{i}.attn.c_proj", T.ATTN_OUT, i)
        norm(f"h.{i}.ln_2", T.FFN_NORM, i)
        linear(f"h.{i}.mlp.c_fc", T.FFN_UP, i)
        linear(f"h.{i}.mlp.c_proj", T.FFN_DOWN, i)
    norm("ln_f", T.OUTPUT_NORM)
    # Tied output (GPT-2's default, and what save_pretrained omits): llama.cpp reuses token_embd by itself.
    head = weights.get("lm_head.weight")
    if head is not None and not torch.equal(head, weights["wte.weight"]):
        matrix("lm_head.weight", name(T.OUTPUT, ".weight"))

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


# ----------------------------------------------------------------------------------------------------------
# generation through llama-cpp-python's low-level (ctypes) API


_log_callback = None  # llama.cpp keeps the pointer: the ctypes object must outlive every call


def _quiet(ll) -> None:
    """Pass on llama.cpp's errors only: its load-time info log is hundreds of lines per model."""
    global _log_callback
    if _log_callback is None:

        def log(level: int, text: bytes, _: ctypes.c_void_p) -> None:
            if level == 4:  # GGML_LOG_LEVEL_ERROR
                sys.stderr.write(text.decode(errors="replace"))

        _log_callback = ll.llama_log_callback(log)
        ll.llama_log_set(_log_callback, ctypes.c_void_p())
        ll.llama_backend_init()


@contextmanager
def llama_context(gguf: Path, sequences: int, tokens_each: int, threads: int) -> Iterator[tuple[object, int]]:
    """A loaded model and a context with a KV cache for `sequences` parallel sequences of `tokens_each` tokens.

    Each sequence gets its own cache stream (kv_unified off, llama.cpp's default): the songs are independent,
    so attention reads only the song's own keys, as in our engine.
    """
    import llama_cpp as ll

    _quiet(ll)
    model = ll.llama_model_load_from_file(str(gguf).encode(), ll.llama_model_default_params())
    if not model:
        raise RuntimeError(f"llama.cpp could not load {gguf}")
    params = ll.llama_context_default_params()
    params.n_ctx = sequences * tokens_each
    params.n_seq_max = sequences
    params.n_batch = max(params.n_batch, sequences)
    params.n_ubatch = max(params.n_ubatch, sequences)
    params.n_threads = params.n_threads_batch = threads
    params.kv_unified = False
    ctx = ll.llama_init_from_model(model, params)
    if not ctx:
        ll.llama_model_free(model)
        raise RuntimeError(f"llama.cpp could not create a context for {sequences} sequences × {tokens_each}")
    try:
        yield ctx, ll.llama_vocab_n_tokens(ll.llama_model_get_vocab(model))
    finally:
        ll.llama_free(ctx)
        ll.llama_model_free(model)


def decode(ctx, n_vocab: int, rows: int, new_tokens: int, start: int,
           pick: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(new_tokens, rows) tokens: every row starts from `start`, one llama_decode per step for all rows.

    `pick` turns the (rows, vocab) logits of a step into each row's next token.
    """
    import llama_cpp as ll

    batch = ll.llama_batch_init(rows, 0, 1)
    try:
        batch.n_tokens = rows
        token = np.ctypeslib.as_array(batch.token, shape=(rows,))  # views onto the batch's own buffers
        pos = np.ctypeslib.as_array(batch.pos, shape=(rows,))
        for i in range(rows):
            batch.n_seq_id[i], batch.seq_id[i][0], batch.logits[i] = 1, i, 1
        token[:] = start
        out = np.empty((new_tokens, rows), dtype=np.int32)
        for step in range(new_tokens):
            pos[:] = step
            if (status := ll.llama_decode(ctx, batch)) != 0:
                raise RuntimeError(f"llama_decode returned {status} at step {step}")
            # The outputs of the rows whose logits flag is set, in batch order (llama.h).
            token[:] = out[step] = pick(np.ctypeslib.as_array(ll.llama_get_logits(ctx), shape=(rows, n_vocab)))
        return out
    finally:
        ll.llama_batch_free(batch)


def top_k_sampler(eot: int, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Top-k 40 at temperature 1 with end-of-text masked, the fixed-length sampling of the other engines.

    torch.topk over a zero-copy view of llama.cpp's logits: the top-k our engine runs, so both engines pay the
    same for sampling. numpy's argpartition cost 15 ms a step at batch 32, a fifth of llama.cpp's whole step.
    """
    generator = torch.Generator().manual_seed(seed)

    def pick(logits: np.ndarray) -> np.ndarray:
        scores = torch.from_numpy(logits)
        scores[:, eot] = -torch.inf  # llama.cpp's output buffer: the next decode rewrites it anyway
        values, indices = torch.topk(scores, TOP_K, dim=1)
        chosen = torch.multinomial(torch.softmax(values, dim=1), 1, generator=generator)
        return indices.gather(1, chosen)[:, 0].numpy()

    return pick


def tokens_per_second(gguf: Path, batch: int, new_tokens: int, threads: int, eot: int, seed: int = 0) -> float:
    """Tokens/s of llama.cpp writing `batch` songs of exactly `new_tokens` tokens, all decoded together.

    Only the generation loop is timed: loading and one warm-up step (first touch of the weights, graph
    allocation) are not, as our engine's timing excludes its load and runs warm. ggml's threads spin at every
    op's barrier, so while another process held one of this machine's 2 cores, 2 threads ran at 1 tok/s where
    1 thread ran at 100: read llama.cpp's numbers together with the report's "other load" line.
    """
    import llama_cpp as ll

    with llama_context(gguf, batch, new_tokens + 1, threads) as (ctx, n_vocab):
        pick = top_k_sampler(eot, seed)
        decode(ctx, n_vocab, batch, 1, eot, pick)
        ll.llama_memory_clear(ll.llama_get_memory(ctx), True)
        start = time.perf_counter()
        decode(ctx, n_vocab, batch, new_tokens, eot, pick)
        return batch * new_tokens / (time.perf_counter() - start)


def greedy(gguf: Path, eot: int, n: int, threads: int) -> list[int]:
    """llama.cpp's greedy continuation of end-of-text: the sanity check against transformers."""
    with llama_context(gguf, 1, n + 1, threads) as (ctx, n_vocab):
        return decode(ctx, n_vocab, 1, n, eot, lambda logits: logits.argmax(axis=1))[:, 0].tolist()


def greedy_in_child(gguf: Path, eot: int, n: int, threads: int) -> list[int]:
    """`greedy` in a child process: a failed GGML_ASSERT aborts the process instead of raising, so the first
    contact with a new model must not take the whole benchmark down with it."""
    done = subprocess.run([sys.executable, __file__, "--probe", str(gguf), "--eot", str(eot), "--greedy", str(n),
                           "--threads", str(threads)], capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(f"llama.cpp failed on this model (exit {done.returncode}): {tail[:200]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def hf_greedy(model, eot: int, n: int) -> list[int]:
    """A transformers GPT2LMHeadModel's greedy continuation of end-of-text (a plain loop: generate() would stop
    at end-of-text, llama.cpp's loop does not)."""
    ids = [eot]
    with torch.inference_mode():
        for _ in range(n):
            ids.append(int(model(torch.tensor([ids], device=model.device)).logits[0, -1].argmax()))
    return ids[1:]


# ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=BUNDLED_MODEL_DIR,
                   help="GPT-2-format folder (config.json, model.safetensors, tokenizer.json) to export and run; "
                        "default: the bundled model")
    p.add_argument("--batches", default="1,8", help="comma-separated batch sizes: songs decoded together (default 1,8)")
    p.add_argument("--new-tokens", type=int, default=32,
                   help="tokens every song gets; end-of-text is masked so none stops early (default 32)")
    p.add_argument("--outtype", choices=("bf16", "f32"), default="bf16",
                   help="GGUF matrix type (default bf16; f32 suits batches on a CPU without bf16 arithmetic)")
    p.add_argument("--threads", type=int, default=torch.get_num_threads(),
                   help="llama.cpp threads (default: torch's intra-op thread count, what our engine uses)")
    p.add_argument("--greedy", type=int, default=0, metavar="N",
                   help="instead of timing, print llama.cpp's first N greedy tokens from end-of-text next to "
                        "transformers' (fp32): a check that the export is right")
    p.add_argument("--probe", type=Path, default=None, metavar="GGUF",
                   help="internal (generation.py's child process): print --greedy N tokens of this GGUF as JSON")
    p.add_argument("--eot", type=int, default=None, help="end-of-text id, with --probe")
    args = p.parse_args(argv)

    if args.probe:
        print(json.dumps(greedy(args.probe, args.eot, args.greedy, args.threads)))
        return
    if reason := unavailable():
        sys.exit(f"llama.cpp: {reason}")
    eot = load_model(str(args.model)).eot_id
    with tempfile.TemporaryDirectory(prefix="llamacpp-") as tmp:
        start = time.perf_counter()
        gguf = export_gguf(args.model, Path(tmp) / f"model-{args.outtype}.gguf", args.outtype)
        print(f"exported {args.model} to GGUF {args.outtype} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
        if args.greedy:
            from transformers import GPT2LMHeadModel

            hf = GPT2LMHeadModel.from_pretrained(args.model).eval()
            ours, theirs = greedy(gguf, eot, args.greedy, args.threads), hf_greedy(hf, eot, args.greedy)
            same = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=True)) if a != b), len(ours))
            print(f"llama.cpp {args.outtype} greedy: {ours}\ntransformers fp32 greedy: {theirs}\n"
                  f"first {same} of {len(ours)} tokens agree")
            return
        for b in (int(x) for x in args.batches.split(",")):
            tps = tokens_per_second(gguf, b, args.new_tokens, args.threads, eot)
            print(f"llama.cpp {args.outtype}, batch {b}, {args.new_tokens} new tokens, {args.threads} threads: "
                  f"{tps:,.0f} tok/s")


if __name__ == "__main__":
    main()
