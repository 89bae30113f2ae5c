"""The attack vocabulary draws ordinary, trained tokens only, on the real SmolLM2 and Qwen2.5
tokenizers: no special, added (chat/tool markers) or out-of-range ids, no untrained rows."""

import gzip
import shutil
from pathlib import Path

import pytest
import torch

from attacks.vocab import PREFIX_COLUMNS, attack_vocabulary, vocabulary_exclusions

QWEN = Path(__file__).parent / "data" / "qwen2.5-coder-tokenizer"


@pytest.fixture(scope="module")
def qwen_tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    where = tmp_path_factory.mktemp("qwen-tok")
    for f in QWEN.iterdir():
        if f.name.endswith(".gz"):
            with gzip.open(f, "rb") as src, open(where / f.name[:-3], "wb") as dst:
                shutil.copyfileobj(src, dst)
        else:
            shutil.copy(f, where / f.name)
    return AutoTokenizer.from_pretrained(where)


def random_rows(n, dim=8, seed=0):
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


def test_qwen_pool_has_no_control_or_added_tokens(qwen_tokenizer):
    tok = qwen_tokenizer
    pool = set(attack_vocabulary(tok, random_rows(len(tok))).tolist())
    added = set(tok.get_added_vocab().values())
    assert {"<|im_start|>", "<|fim_prefix|>", "<|file_sep|>", "<|endoftext|>"} <= set(tok.get_added_vocab())
    assert not pool & added and not pool & set(tok.all_special_ids)
    assert not [i for i in pool if tok.convert_ids_to_tokens(i).startswith("<|")]
    assert len(pool) == len(tok) - len(added | set(tok.all_special_ids))


def test_rows_beyond_the_tokenizer_and_untrained_rows_are_never_drawn(qwen_tokenizer):
    tok = qwen_tokenizer
    rows = random_rows(len(tok) + 256)  # padded embedding matrix, as Qwen checkpoints have
    rows[1000] = rows[2000]  # an exact copy: untrained
    rows[3000] = 0.0  # a zero row: untrained
    pool = set(attack_vocabulary(tok, rows).tolist())
    assert max(pool) < len(tok) and not {1000, 2000, 3000} & pool
    counts = vocabulary_exclusions(tok, rows)
    assert counts["out_of_range"] == 256 and counts["untrained"] == 3
    assert counts["added"] + counts["special"] == len(set(tok.get_added_vocab().values()) | set(tok.all_special_ids))


def test_qwen_padding_slots_sharing_one_row_are_never_drawn(qwen_tokenizer):
    """Qwen checkpoints pad the vocabulary to 151936 with [PAD...] tokens whose rows were never
    trained (all equal); they are ordinary vocabulary entries, so only their rows betray them."""
    tok = qwen_tokenizer
    pads = [i for t, i in tok.get_vocab().items() if t.startswith("[PAD")]
    assert len(pads) == 271 and len(tok) == 151936
    rows = random_rows(len(tok))
    rows[pads] = rows[pads[0]].clone()
    pool = set(attack_vocabulary(tok, rows).tolist())
    assert not pool & set(pads) and vocabulary_exclusions(tok, rows)["untrained"] == len(pads)


def test_only_rows_equal_in_every_column_count_as_duplicates(qwen_tokenizer):
    """Duplicates are searched among rows sharing their first columns: rows that share only
    those columns stay in the pool."""
    tok = qwen_tokenizer
    rows = random_rows(len(tok), dim=2 * PREFIX_COLUMNS)
    rows[100:140, :PREFIX_COLUMNS] = rows[99, :PREFIX_COLUMNS]  # same prefix, different tails
    rows[500:503] = rows[600]  # four equal rows
    rows[700, PREFIX_COLUMNS:] = rows[701, PREFIX_COLUMNS:]  # same tail only
    pool = set(attack_vocabulary(tok, rows).tolist())
    assert set(range(99, 140)) | {700, 701} <= pool
    assert not {500, 501, 502, 600} & pool and vocabulary_exclusions(tok, rows)["untrained"] == 4


@pytest.mark.integration
def test_smollm2_pool_excludes_its_markers_and_duplicate_rows(smollm2):
    model, tok = smollm2
    weight = model.get_input_embeddings().weight
    pool = set(attack_vocabulary(tok, weight).tolist())
    for marker in ("<|im_start|>", "<|im_end|>", "<file_sep>", "<jupyter_code>"):
        assert tok.convert_tokens_to_ids(marker) not in pool
    # four glitch tokens ("PlaneProtection", ...) share their embedding rows: never trained
    glitches = [tok.convert_tokens_to_ids(t) for t in ("PlaneProtection", "ManagementPlaneProtection")]
    assert not set(glitches) & pool and vocabulary_exclusions(tok, weight)["untrained"] == 4
    ascii_pool = attack_vocabulary(tok, weight, ascii_only=True).tolist()
    assert set(ascii_pool) < pool and all(tok.decode([i]).isascii() for i in ascii_pool)
