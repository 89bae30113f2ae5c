"""Tiny randomly initialised causal LMs (Llama, Qwen2, Qwen3) for fast tests."""

import torch
from transformers import (
    LlamaConfig,
    LlamaForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

ARCHITECTURES = {
    "llama": (LlamaConfig, LlamaForCausalLM),
    "qwen2": (Qwen2Config, Qwen2ForCausalLM),
    "qwen3": (Qwen3Config, Qwen3ForCausalLM),
}


def tiny_model(arch: str = "llama", kv_heads: int = 2, layers: int = 3, vocab: int = 128, seed: int = 0):
    """A float32 eval-mode model small enough to run in milliseconds."""
    config_cls, model_cls = ARCHITECTURES[arch]
    torch.manual_seed(seed)
    config = config_cls(
        vocab_size=vocab,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        head_dim=16,
        max_position_embeddings=4096,
        attn_implementation="sdpa",
        tie_word_embeddings=False,
    )
    return model_cls(config).eval()


CHAT_TEMPLATE = (
    "{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)

CORPUS = [
    "Is the sun a star? Yes. Is Rome in Belgium? No. Is fire hot? Yes, it is.",
    "Answer with yes or no. YES NO yes no Yes No. Question: Answer:",
    "The weather was mild and the afternoon passed quietly in the small town.",
    "Water boils at one hundred degrees at sea level. Paris is the capital of France.",
    "Is 100 an even number? Is ice cold? Do fish swim? Can dogs fly?",
]


def tiny_tokenizer():
    """A byte-level BPE tokenizer trained in milliseconds, with a chat template."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS * 4, vocab_size=400, min_frequency=1,
                            special_tokens=["<|endoftext|>", "<|user|>", "<|assistant|>", "<|end|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>",
                                  pad_token="<|endoftext|>", additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"])
    tok.chat_template = CHAT_TEMPLATE
    tok.padding_side = "left"
    return tok


def answer_mostly_yes_or_no(model, tok, logit: float = 30.0):
    """Raise the yes/no rows of the output layer along the mean final hidden state of the
    corpus, so the model puts most of its mass on yes/no answers (which one still depends
    on the prompt): a random model otherwise answers neither, and nothing is counted."""
    from tasks import answer_token_sets

    sets = answer_token_sets(tok)
    rows = sorted(set(sets.correct("yes")) | set(sets.correct("no")))
    ids = tok(CORPUS, return_tensors="pt", padding=True).input_ids
    with torch.no_grad():
        mean = model.model(input_ids=ids).last_hidden_state[:, -1].mean(0)
        model.lm_head.weight[rows] += logit * mean / mean.dot(mean)
    return model


def save_tiny_pair(path, arch: str = "llama", layers: int = 3, seed: int = 0, answering: bool = False):
    """Save a tiny model + tokenizer directory loadable with `--model <path>` (`answering`:
    see `answer_mostly_yes_or_no`)."""
    tok = tiny_tokenizer()
    model = tiny_model(arch, layers=layers, vocab=len(tok), seed=seed)
    if answering:
        answer_mostly_yes_or_no(model, tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return model, tok


def greedy(model, ids, n):
    """Reference greedy decoding: the next `n` argmax tokens, full forward each time."""
    out = []
    with torch.no_grad():
        for _ in range(n):
            nxt = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
            out.append(nxt)
            ids = torch.cat([ids, nxt], 1)
    return torch.cat(out, 1)
