"""The text tower on numpy alone, so a text query does not import torch and open_clip.

A fresh ``archive search "a beach"`` spends most of its time importing torch, torchvision and
open_clip and building the whole model, to run a text tower on a few short prompts. Instead, the
first time the full model is loaded in full precision (at index time, by :meth:`Encoder.load`),
its text tower's weights and its tokenizer's tables are exported to a cache folder
(``ARCHIVE_CACHE_DIR/text/<key>/``, default ``~/.cache/archive``; about 250 MB for ViT-B-32, once
per model and machine). An export is kept only after the numpy tower has embedded probe texts as
open_clip does (cosine >= 0.99999 to open_clip's fp32 vectors); from then on every text of that
model (queries, labels, the background prompts, ``clip_score``) is embedded by it, in fp32, in
every process. Models whose text tower or tokenizer is not the plain CLIP one are not exported and
keep using open_clip.
"""

from __future__ import annotations

import hashlib
import html
import importlib.metadata
import json
import math
import os
import shutil
import sys
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from indexer import settings

FORMAT = 2
PROBES = (
    "a photo of a dog on a beach.",
    "football",
    "a still from a video showing a red car.",
    "Ünïcode &amp; punctuation!! 123",
    "a very " + "long " * 90 + "text",
)
MIN_COSINE = 0.99999
_ROWS = 1024  # token rows per pass of the tower (the attention is rows x rows per head)


def cache_key(model: str, pretrained: str) -> str:
    """Which export belongs to a model and its weights (a checkpoint file by path, size and time)."""
    parts = [f"format {FORMAT}", model, pretrained]
    if os.path.isfile(pretrained):
        st = os.stat(pretrained)
        parts += [str(st.st_size), str(st.st_mtime_ns)]
    try:
        parts.append(importlib.metadata.version("open_clip_torch"))
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        parts.append("?")
    return hashlib.blake2b("\0".join(parts).encode(), digest_size=10).hexdigest()


def export_dir(model: str, pretrained: str) -> Path:
    return settings.cache_dir() / "text" / f"{model}-{cache_key(model, pretrained)}"


# -- the tokenizer: CLIP's byte-level BPE, on the tables open_clip's SimpleTokenizer built ---------
@lru_cache()
def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


class BPETokenizer:
    """CLIP's tokenizer (lower-casing, ftfy clean-up, byte-level BPE), from exported tables."""

    def __init__(self, tables: dict[str, Any]) -> None:
        import regex  # lazy: only tokenizing a text needs open_clip's tokenizer packages

        self.encoder: dict[str, int] = tables["encoder"]
        self._merges: list[str] = tables["merges"]
        self._ranks: dict[tuple[str, ...], int] | None = None
        self.sot, self.eot = int(tables["sot"]), int(tables["eot"])
        self.context_length = int(tables["context_length"])
        special = "|".join(tables["special"])
        self.pat = regex.compile(
            special + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
        )
        self.cache: dict[str, str] = {t: t for t in tables["special"]}
        self.byte_encoder = _bytes_to_unicode()

    @property
    def bpe_ranks(self) -> dict[tuple[str, ...], int]:
        """The merges' ranks, built when a text is first tokenized (0.1 s: an index run or an
        image query that never tokenizes does not pay it)."""
        if self._ranks is None:
            self._ranks = {tuple(m.split(" ")): i for i, m in enumerate(self._merges)}
        return self._ranks

    def _bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token[:-1]) + (token[-1] + "</w>",)
        pairs = set(zip(word, word[1:]))
        if not pairs:
            return token + "</w>"
        ranks = self.bpe_ranks
        while True:
            bigram = min(pairs, key=lambda p: ranks.get(p, float("inf")))
            if bigram not in ranks:
                break
            first, second = bigram
            new: list[str] = []
            i = 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                except ValueError:
                    new.extend(word[i:])
                    break
                new.extend(word[i:j])
                i = j
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new.append(first + second)
                    i += 2
                else:
                    new.append(word[i])
                    i += 1
            word = tuple(new)
            if len(word) == 1:
                break
            pairs = set(zip(word, word[1:]))
        out = " ".join(word)
        self.cache[token] = out
        return out

    def encode(self, text: str) -> list[int]:
        import ftfy  # lazy: only tokenizing a text needs open_clip's tokenizer packages

        text = ftfy.fix_text(text)
        text = " ".join(html.unescape(html.unescape(text)).strip().split()).strip().lower()
        ids: list[int] = []
        for token in self.pat.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[t] for t in self._bpe(token).split(" "))
        return ids

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        """``(n, context_length)`` int64 token ids: start, text, end, zeros (cut like open_clip)."""
        out = np.zeros((len(texts), self.context_length), np.int64)
        for i, text in enumerate(texts):
            tokens = [self.sot] + self.encode(text) + [self.eot]
            if len(tokens) > self.context_length:
                tokens = tokens[: self.context_length]
                tokens[-1] = self.eot
            out[i, : len(tokens)] = tokens
        return out


# -- the tower ---------------------------------------------------------------------------------
_INV_SQRT2 = np.float32(
    1.0 / math.sqrt(2.0)
)  # a float32 scalar: a float64 one would turn every layer after it to float64


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to about 1e-7 (Abramowitz & Stegun 7.1.26): numpy has none, and exact GELU needs it."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (
        ((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592
    ) * t * np.exp(-a * a)
    return s * y


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray, eps: float) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def _matmul() -> Any:
    """The weight products: numpy's, or torch's where torch is already loaded (a process with the
    model, ``archive serve``): OpenBLAS threads left spinning after a numpy product slow down the
    torch scan that follows by half on 2 cores. Same float32 arithmetic either way."""
    if "torch" not in sys.modules:
        return np.matmul
    import torch  # lazy: heavy import (torch)

    def mm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # read-only (memory-mapped) weights
            tb = torch.from_numpy(b)
        with torch.inference_mode():
            return torch.mm(torch.from_numpy(np.ascontiguousarray(a)), tb).numpy()

    return mm


class NumpyTextTower:
    """An exported CLIP text tower: texts -> ``(n, dim)`` unit float32 vectors, on numpy."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta = json.loads((folder / "meta.json").read_text())
        self.tokenizer = BPETokenizer(json.loads((folder / "tokenizer.json").read_text()))
        self._w: dict[str, np.ndarray] = {}
        self.dim = int(self.meta["dim"])
        self.context_length = self.tokenizer.context_length

    def w(self, name: str) -> np.ndarray:
        if name not in self._w:
            self._w[name] = np.load(self.folder / f"{name}.npy", mmap_mode="r")
        return self._w[name]

    @classmethod
    def open(cls, model: str, pretrained: str) -> "NumpyTextTower | None":
        """The verified export for this model, or None (also when ARCHIVE_TEXT_TOWER=torch)."""
        if settings.text_tower() != "auto":
            return None
        folder = export_dir(model, pretrained)
        try:
            if not (folder / "meta.json").is_file():
                return None
            tower = cls(folder)
        except (OSError, ValueError, KeyError):  # unreadable (another user's cache): not used
            return None
        return tower if tower.meta.get("verified") else None

    def too_long(self, text: str) -> bool:
        return len(self.tokenizer.encode(text)) + 2 > self.context_length

    def encode_fixed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`encode` for a set of texts the program always uses (the background prompts),
        kept beside the export after the first time, so a run reads 5 KB instead of embedding."""
        texts = list(texts)
        key = hashlib.blake2b("\0".join(texts).encode(), digest_size=8).hexdigest()
        path = self.folder / f"fixed-{key}.npy"
        try:
            vecs = np.load(path)
            if vecs.shape == (len(texts), self.dim) and vecs.dtype == np.float32:
                return vecs
        except (OSError, ValueError):
            pass
        vecs = self.encode(texts)
        try:
            fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=self.folder)
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, vecs)
            os.replace(tmp, path)
        except OSError:  # a read-only cache: embedded again next time
            pass
        return vecs

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts``, as open_clip's ``encode_text`` gives them.

        The tower is causal, so a token's states depend only on the tokens up to it: padding after
        the end token is never computed, and a token prefix that several texts share ("a photo
        of a ...", the start token) is computed once. Rows are the distinct prefixes of a batch;
        each attends to its own prefix only. (Five templates of one query: 32 rows, not 5 x 11.)
        """
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        tokens = self.tokenizer(list(texts))
        ends = tokens.argmax(axis=1)  # the end token: the highest id, where the tower pools
        out: list[np.ndarray] = []
        chunk: list[int] = []
        size = 0
        for i in range(len(tokens)):  # chunks of at most ~1024 token rows bound the attention's memory
            if chunk and size + int(ends[i]) + 1 > _ROWS:
                out.append(self._encode_rows(tokens[chunk], ends[chunk]))
                chunk, size = [], 0
            chunk.append(i)
            size += int(ends[i]) + 1
        out.append(self._encode_rows(tokens[chunk], ends[chunk]))
        return np.concatenate(out) if len(out) > 1 else out[0]

    def _encode_rows(self, tokens: np.ndarray, ends: np.ndarray) -> np.ndarray:
        m = self.meta
        mm = _matmul()
        node: dict[tuple[int, int], int] = {}  # (parent row, token) -> row
        tok: list[int] = []
        pos: list[int] = []
        parent: list[int] = []
        pooled: list[int] = []
        for t, end in zip(tokens, ends):
            prev = -1
            for j in range(int(end) + 1):
                key = (prev, int(t[j]))
                r = node.get(key)
                if r is None:
                    r = node[key] = len(tok)
                    tok.append(key[1])
                    pos.append(j)
                    parent.append(prev)
                prev = r
            pooled.append(prev)
        rows = len(tok)
        mask = np.full((rows, rows), -np.inf, np.float32)  # a row sees itself and its prefix
        for r in range(rows):
            a = r
            while a >= 0:
                mask[r, a] = 0.0
                a = parent[a]
        x = (
            np.asarray(self.w("token_embedding")[np.asarray(tok)], np.float32)
            + self.w("positional_embedding")[np.asarray(pos)]
        )
        heads, eps = int(m["heads"]), float(m["eps"])
        width = x.shape[-1]
        hd = width // heads
        for i in range(int(m["layers"])):
            p = f"b{i}."
            y = _layer_norm(x, self.w(p + "ln_1.w"), self.w(p + "ln_1.b"), eps)
            qkv = (mm(y, self.w(p + "in_proj.wt")) + self.w(p + "in_proj.b")).reshape(rows, 3, heads, hd)
            q, k, v = (qkv[:, j].transpose(1, 0, 2) for j in range(3))  # (heads, rows, hd)
            att = (q * np.float32(hd**-0.5)) @ k.transpose(0, 2, 1) + mask
            att = np.exp(att - att.max(-1, keepdims=True))
            att /= att.sum(-1, keepdims=True)
            o = (att @ v).transpose(1, 0, 2).reshape(rows, width)
            o = mm(o, self.w(p + "out_proj.wt")) + self.w(p + "out_proj.b")
            if m["layer_scale"]:
                o = o * self.w(p + "ls_1")
            x = x + o
            y = _layer_norm(x, self.w(p + "ln_2.w"), self.w(p + "ln_2.b"), eps)
            y = mm(y, self.w(p + "c_fc.wt")) + self.w(p + "c_fc.b")
            y = (
                y * (1.0 / (1.0 + np.exp(-1.702 * y)))
                if m["act"] == "quick_gelu"
                else 0.5 * y * (1.0 + _erf(y * _INV_SQRT2))
            )
            y = mm(y, self.w(p + "c_proj.wt")) + self.w(p + "c_proj.b")
            if m["layer_scale"]:
                y = y * self.w(p + "ls_2")
            x = x + y
        x = _layer_norm(x[np.asarray(pooled)], self.w("ln_final.w"), self.w("ln_final.b"), eps)
        out = mm(x, self.w("text_projection"))
        if "text_projection_bias" in m.get("extra", []):
            out = out + self.w("text_projection_bias")
        out = out / np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out, dtype=np.float32)


# -- export ------------------------------------------------------------------------------------
def _plain_clip_text(model: Any, tokenizer: Any) -> dict[str, Any] | None:
    """What the export needs of an open_clip model, or None when its text tower or tokenizer is
    not the plain CLIP one this module reproduces."""
    import torch  # lazy: heavy import (torch)
    from open_clip.tokenizer import SimpleTokenizer  # lazy: heavy import (torch)
    from open_clip.transformer import LayerScale, QuickGELU, ResidualAttentionBlock  # lazy: heavy import (torch)

    if type(tokenizer) is not SimpleTokenizer or getattr(tokenizer, "reduction_fn", None) is not None:
        return None
    if getattr(tokenizer, "clean_fn", None) is None or tokenizer.clean_fn.__name__ != "_clean_lower":
        return None
    need = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask", "text_projection")
    if not all(getattr(model, a, None) is not None for a in need) or getattr(model, "text_pool_type", "") != "argmax":
        return None
    blocks = list(getattr(model.transformer, "resblocks", []))
    if not blocks or any(type(b) is not ResidualAttentionBlock or hasattr(b, "ln_1_kv") for b in blocks):
        return None
    acts = {type(b.mlp.gelu) for b in blocks}
    scales = {type(b.ls_1) for b in blocks} | {type(b.ls_2) for b in blocks}
    if len(acts) != 1 or acts.pop() not in (torch.nn.GELU, QuickGELU) or not scales <= {torch.nn.Identity, LayerScale}:
        return None
    if isinstance(blocks[0].mlp.gelu, torch.nn.GELU) and blocks[0].mlp.gelu.approximate != "none":
        return None
    eps = {float(b.ln_1.eps) for b in blocks} | {float(b.ln_2.eps) for b in blocks} | {float(model.ln_final.eps)}
    if len(eps) != 1:
        return None
    return {
        "layers": len(blocks),
        "heads": int(blocks[0].attn.num_heads),
        "eps": eps.pop(),
        "act": "quick_gelu" if isinstance(blocks[0].mlp.gelu, QuickGELU) else "gelu",
        "layer_scale": any(isinstance(b.ls_1, LayerScale) for b in blocks),
    }


def export(model: Any, tokenizer: Any, name: str, pretrained: str) -> NumpyTextTower | None:
    """Write the numpy export of an fp32 open_clip model's text tower and verify it; the tower,
    or None when the model is not supported or does not verify (then nothing is kept)."""
    import torch  # lazy: heavy import (torch)

    shape = _plain_clip_text(model, tokenizer) if settings.text_tower() == "auto" else None
    if shape is None:
        return None
    dest = export_dir(name, pretrained)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
    except OSError:
        return None  # a read-only cache: the model's own text tower is used
    try:

        def save(key: str, t: Any) -> None:
            np.save(tmp / f"{key}.npy", np.ascontiguousarray(t.detach().float().cpu().numpy()))

        save("token_embedding", model.token_embedding.weight)
        save("positional_embedding", model.positional_embedding)
        for i, b in enumerate(model.transformer.resblocks):
            p = f"b{i}."
            save(p + "ln_1.w", b.ln_1.weight)
            save(p + "ln_1.b", b.ln_1.bias)
            # linear weights are stored transposed (in, out): contiguous for the products
            save(p + "in_proj.wt", b.attn.in_proj_weight.T)
            save(p + "in_proj.b", b.attn.in_proj_bias)
            save(p + "out_proj.wt", b.attn.out_proj.weight.T)
            save(p + "out_proj.b", b.attn.out_proj.bias)
            save(p + "ln_2.w", b.ln_2.weight)
            save(p + "ln_2.b", b.ln_2.bias)
            save(p + "c_fc.wt", b.mlp.c_fc.weight.T)
            save(p + "c_fc.b", b.mlp.c_fc.bias)
            save(p + "c_proj.wt", b.mlp.c_proj.weight.T)
            save(p + "c_proj.b", b.mlp.c_proj.bias)
            if shape["layer_scale"]:
                save(p + "ls_1", b.ls_1.gamma)
                save(p + "ls_2", b.ls_2.gamma)
        save("ln_final.w", model.ln_final.weight)
        save("ln_final.b", model.ln_final.bias)
        extra = []
        proj = model.text_projection
        if isinstance(proj, torch.nn.Linear):
            save("text_projection", proj.weight.T)
            if proj.bias is not None:
                save("text_projection_bias", proj.bias)
                extra.append("text_projection_bias")
        else:
            save("text_projection", proj)
        dim = int(np.load(tmp / "text_projection.npy", mmap_mode="r").shape[1])
        tables = {
            "encoder": tokenizer.encoder,
            "merges": [" ".join(m) for m in sorted(tokenizer.bpe_ranks, key=tokenizer.bpe_ranks.get)],
            "special": [tokenizer.decoder[i] for i in tokenizer.all_special_ids],
            "sot": tokenizer.sot_token_id,
            "eot": tokenizer.eot_token_id,
            "context_length": int(tokenizer.context_length),
        }
        (tmp / "tokenizer.json").write_text(json.dumps(tables))
        meta = {**shape, "dim": dim, "extra": extra, "model": name, "pretrained": pretrained, "verified": False}
        (tmp / "meta.json").write_text(json.dumps(meta))
        tower = NumpyTextTower(tmp)
        with torch.inference_mode():
            want = torch.nn.functional.normalize(model.encode_text(tokenizer(list(PROBES))).float(), dim=-1).numpy()
        got = tower.encode(PROBES)
        if not np.all(np.sum(want * got, axis=1) >= MIN_COSINE):
            return None
        meta["verified"] = True
        (tmp / "meta.json").write_text(json.dumps(meta))
        if dest.exists():
            shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
        return NumpyTextTower(dest)
    except OSError:
        return None  # a read-only or full cache: the model's own text tower is used
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
