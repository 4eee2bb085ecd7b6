"""The embedding space: an open_clip model with its tokenizer, and image and text encoders.

Weights come from one of three places, chosen by ``pretrained``:

* a tag that open_clip knows for the model (``laion2b_s34b_b79k``, ``openai``, ...): open_clip's
  own download and cache (``~/.cache/huggingface`` or ``--model-dir`` / ``ARCHIVE_MODEL_DIR``);
* a local checkpoint file (``.pt``, ``.bin``, ``.safetensors``);
* ``none``: random weights, seeded so that every process builds the same model. Random weights do
  not understand text; they still tell one shot from another, which is what tests use.

torch and open_clip are imported here lazily, so the CLI starts instantly.

Longer than the project's ~500 lines on purpose: the three ways weights load, the exported towers
and both encoders share one loading path, and the checks that an export gives the model's own
vectors sit beside it.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

from indexer import settings
from indexer.device import pick_device, pick_precision
from indexer.errors import ModelLoadError, QueryError
from indexer.media.imageprep import ImagePrep, scale_like_frames
from indexer.store.records import ModelSpec

from . import image_tower, text_tower

if TYPE_CHECKING:  # pragma: no cover
    import torch

DEFAULT_MODEL = settings.DEFAULT_MODEL
DEFAULT_PRETRAINED = settings.DEFAULT_PRETRAINED
RANDOM_SEED = 0
_NONE_WORDS = {"none", "random", ""}


def resolve_spec(name: str, pretrained: str) -> ModelSpec:
    """Normalise user input: ``None``/``random`` -> ``none``, checkpoint paths -> absolute paths.

    Raises:
        ModelLoadError: the name or tag is unknown, or a checkpoint path does not exist.
    """
    plain = _plain_spec(name, pretrained)

    try:
        if (text_tower.export_dir(plain.name, plain.pretrained) / "meta.json").is_file():
            return plain  # exported from a model that loaded: name and weights were checked then
    except OSError:  # another user's cache: checked against open_clip's lists instead
        pass
    import open_clip  # lazy: heavy import (torch)

    name = name.strip()
    if name not in open_clip.list_models():
        close = [m for m in open_clip.list_models() if name.lower().replace("/", "-") in m.lower()][:6]
        hint = (
            f" Did you mean: {', '.join(close)}?"
            if close
            else " See `python -c 'import open_clip; print(open_clip.list_models())'`."
        )
        raise ModelLoadError(f"unknown open_clip model '{name}'.{hint}")
    p = (pretrained or "").strip()
    if p.lower() in _NONE_WORDS:
        return ModelSpec(name, "none")
    tags = open_clip.list_pretrained_tags_by_model(name)
    if p in tags or p.lower() in tags:
        return ModelSpec(name, p if p in tags else p.lower())
    path = Path(p).expanduser()
    if path.is_file():
        return ModelSpec(name, str(path.resolve()))
    if any(sep in p for sep in ("/", "\\")) or path.suffix in {".pt", ".pth", ".bin", ".safetensors", ".ckpt"}:
        raise ModelLoadError(
            f"checkpoint file not found: {p}. Give the path of a local open_clip checkpoint for {name}."
        )
    known = f"its tags: {', '.join(tags)}" if tags else "it has no published weights"
    raise ModelLoadError(
        f"'{p}' is neither a weights tag for {name} ({known}) nor a checkpoint file; "
        "give a tag, a checkpoint path, or 'none' for random weights."
    )


def _plain_spec(name: str, pretrained: str) -> ModelSpec:
    """What :func:`resolve_spec` gives for input that needs no checking against open_clip's lists:
    ``none``, an existing checkpoint file (absolute), or the tag as typed."""
    p = (pretrained or "").strip()
    if p.lower() in _NONE_WORDS:
        return ModelSpec(name.strip(), "none")
    path = Path(p).expanduser()
    return ModelSpec(name.strip(), str(path.resolve()) if path.is_file() else p)


def _pil_prep(preprocess: Any, rgb: np.ndarray) -> np.ndarray:
    """open_clip's own preprocessing of one RGB frame (through PIL)."""
    from PIL import Image  # lazy: Pillow is loaded only for image files

    return preprocess(Image.fromarray(rgb)).numpy()


def _load_quietly(load: Any) -> "Encoder":
    """``load()`` with Python's cyclic garbage collector off, and back as it was after.

    Importing torch and loading a model create a few hundred thousand objects and no garbage, yet
    each full collection they set off walks all of them (15-70 ms each, 3-4 in a load, nothing
    collected). With ``settings.FREEZE_AFTER_LOAD`` (the CLI) the objects alive after a load that
    succeeded are also moved out of the collector's sight (``gc.freeze``), so the collections later
    in the run do not walk torch's objects again (one at the end of an index run took 84 ms); after
    a full build (the first load of a model, which exports its towers, or a GPU) its garbage is
    collected first. Not done for library callers: a frozen object that later becomes garbage in
    a cycle is never freed.
    """
    was = gc.isenabled()
    gc.disable()
    try:
        enc = load()
        if settings.FREEZE_AFTER_LOAD:
            if enc.model is not None:
                gc.collect()
            gc.freeze()
        return enc
    finally:
        if was:
            gc.enable()


class Encoder:
    """An open_clip model ready to embed images and texts into L2-normalised float32 vectors.

    Build it with :meth:`Encoder.load`. Vectors are ``np.ndarray`` of shape ``(n, dim)``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        model: Any,
        preprocess: Any,
        tokenizer: Any,
        device: str,
        image_tower: Any = None,
        text_np: Any = None,
    ) -> None:
        self.spec = spec
        self.model = model  # the open_clip model; None when loaded from the exports
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.image_tower = image_tower  # the saved TorchScript image tower (indexer.model.image_tower), when used
        self.text_np: Any = text_np  # the verified numpy text tower (indexer.model.text_tower), when there is one
        self._trim_text: bool | None = None  # trimmed text path verified against encode_text
        self.precision = "fp32"  # of the image tower; set by load()
        if image_tower is not None:
            self.image_size = image_tower.image_size
            self.context_length = int(text_np.context_length)
            self.dim = image_tower.dim
            self.prep = ImagePrep(self.image_size, image_tower.mean, image_tower.std)
            return
        size = getattr(model.visual, "image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        self.context_length = int(getattr(model, "context_length", 77) or 77)
        self.dim = int(self._probe_dim())
        plain = _plain_transform(preprocess, self.image_size)  # (mean, std): open_clip's usual pipeline
        # (a function of the transform, not a bound method: the encoder holds no cycle, so a dropped
        # one is freed at once, also where the collector no longer sees it: _load_quietly)
        mean, std = plain or (None, None)
        self.prep = ImagePrep(self.image_size, mean, std, fallback=functools.partial(_pil_prep, preprocess))

    @property
    def text_precision(self) -> str:
        """The precision texts are embedded in: always fp32 (only the image tower runs in bf16)."""
        return "fp32"

    @classmethod
    def load(
        cls,
        name: str = DEFAULT_MODEL,
        pretrained: str = DEFAULT_PRETRAINED,
        device: str = settings.DEFAULT_DEVICE,
        cache_dir: str | None = None,
        precision: str = settings.DEFAULT_PRECISION,
        full: bool = False,
    ) -> "Encoder":
        """Build the model and load its weights, or load its exports.

        On the CPU, once a model has been loaded in full, its image tower (:mod:`indexer.model.image_tower`)
        and text tower (:mod:`indexer.model.text_tower`) are exported to ``ARCHIVE_CACHE_DIR``; later loads
        use those and give the same vectors without importing open_clip or building the model
        (about 0.2 s instead of 2-15 s). ``full=True`` always builds the open_clip model (for
        callers that need ``model``, ``preprocess`` or ``tokenizer``).

        Args:
            name: open_clip model name, e.g. ``ViT-B-32``.
            pretrained: a tag, a local checkpoint path, or ``none`` for seeded random weights.
            device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
            cache_dir: where open_clip caches downloads (default: its own, or ``ARCHIVE_MODEL_DIR``).
            precision: ``fp32``, ``bf16`` or ``auto`` (env ``ARCHIVE_PRECISION``) for the image
                tower: bf16 where the hardware does bf16 natively (CPUs with AVX512-BF16/AMX,
                CUDA GPUs that support it), else fp32. Vectors come out as float32 either way;
                bf16 ones have cosine >= 0.9999 to fp32 ones (tests/test_speed_paths.py). The
                text tower always runs in fp32.
            full: build the open_clip model even where exports exist.

        Raises:
            ModelLoadError: unknown model or tag, missing file, or weights that cannot be fetched.
        """
        return _load_quietly(lambda: cls._load(name, pretrained, device, cache_dir, precision, full))

    @classmethod
    def _load(
        cls, name: str, pretrained: str, device: str, cache_dir: str | None, precision: str, full: bool
    ) -> "Encoder":
        dev = pick_device(device)
        prec = pick_precision(precision, dev)  # checked before the (slow) model build
        if not full and dev == "cpu":
            enc = cls._from_exports(_plain_spec(name, pretrained), prec)
            if enc is not None:
                return enc
        spec = resolve_spec(name, pretrained)
        import open_clip  # lazy: heavy import (torch)

        cache_dir = cache_dir or settings.model_dir()

        try:
            with quiet_library_logs():
                model, preprocess = _create(spec, cache_dir)
        except ModelLoadError:
            raise
        except Exception as exc:  # network, cache, corrupt checkpoint: all end in one line
            if Path(spec.pretrained).is_file():
                raise ModelLoadError(
                    f"could not load checkpoint {spec.pretrained} into {spec.name}: {_first_line(exc)}"
                ) from exc
            raise ModelLoadError(
                f"the '{spec.pretrained}' weights for {spec.name} are not in the local cache and could not be "
                "downloaded (no network?). Fetch them once on a connected machine (open_clip caches them in "
                "~/.cache/huggingface, or ARCHIVE_MODEL_DIR), or pass a checkpoint with --pretrained FILE, "
                "or use --pretrained none for random weights."
            ) from exc
        model = model.eval()
        tokenizer = open_clip.get_tokenizer(spec.name)
        # the numpy text tower: exported once from these fp32 weights (before any bf16 cast)
        text_np = text_tower.NumpyTextTower.open(spec.name, spec.pretrained) or text_tower.export(
            model, tokenizer, spec.name, spec.pretrained
        )
        model = model.to(dev)
        enc = cls(spec, model, preprocess, tokenizer, dev)
        enc.text_np = text_np
        if prec == "bf16":
            import torch  # lazy: heavy import (torch)

            # The image tower only: texts stay in fp32, so every process embeds a text the same
            # way (a text query without torch uses the fp32 numpy export of this tower).
            model.visual.to(torch.bfloat16)
        enc.precision = prec
        if dev == "cpu" and text_np is not None:
            image_tower.export(
                model, spec.name, spec.pretrained, prec, enc.image_size, _plain_transform(preprocess, enc.image_size)
            )
        return enc

    @classmethod
    def _from_exports(cls, spec: ModelSpec, precision: str) -> "Encoder | None":
        """An encoder on the exported image and text towers of ``spec``, or None when either is
        missing (then the model is built by open_clip, which exports them)."""
        text_np = text_tower.NumpyTextTower.open(spec.name, spec.pretrained)
        if text_np is None:
            return None
        tower = image_tower.ImageTower.open(spec.name, spec.pretrained, precision)
        if tower is None or tower.dim != text_np.dim:
            return None
        enc = cls(spec, None, None, None, "cpu", image_tower=tower, text_np=text_np)
        enc.precision = precision
        return enc

    # -- images ---------------------------------------------------------------------------------
    def preprocess_array(self, rgb: np.ndarray) -> "torch.Tensor":
        """One HxWx3 uint8 RGB frame -> the model's input tensor (resize, crop, normalise).

        Frames the decoder already scaled to the model's size skip PIL: open_clip's resize is then
        a no-op, and the centre crop and normalisation are done on the array directly, with the
        same numbers (tests/test_speed_paths.py compares them). See :class:`ImagePrep`.
        """
        import torch  # lazy: heavy import (torch)

        return torch.from_numpy(self.prep(rgb))

    def encode_batch(self, batch: "torch.Tensor | np.ndarray") -> np.ndarray:
        """A preprocessed ``(n, 3, H, W)`` tensor or float32 array -> ``(n, dim)`` unit vectors."""
        import torch  # lazy: heavy import (torch)

        if isinstance(batch, np.ndarray):
            batch = torch.from_numpy(batch)
        with torch.inference_mode():
            x = batch.to(self.device)
            if self.precision == "bf16":
                x = x.to(torch.bfloat16)
            emb = self.image_tower(x) if self.image_tower is not None else self.model.encode_image(x)
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def encode_images(self, frames: Sequence[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames -> ``(n, dim)`` unit vectors."""
        if not frames:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_batch(np.stack([self.prep(f) for f in frames]))

    def encode_image_file(self, path: str | os.PathLike[str]) -> np.ndarray:
        """An image file (JPEG, PNG, ...) -> one ``(dim,)`` unit vector.

        The image is scaled by the same scaler (FFmpeg's swscale) as indexed frames, so a still
        taken from an indexed video embeds like the frame itself.

        Raises:
            QueryError: the file is missing or not an image.
        """
        from PIL import Image, UnidentifiedImageError  # lazy: Pillow is loaded only for image files

        p = Path(path).expanduser()
        if not p.is_file():
            raise QueryError(f"image file not found: {path}")
        try:
            with Image.open(p) as im:
                rgb = np.asarray(im.convert("RGB"))
        except (UnidentifiedImageError, OSError) as exc:
            raise QueryError(f"not a readable image: {path} ({_first_line(exc)})") from exc

        return self.encode_images([scale_like_frames(rgb, self.image_size)])[0]

    # -- text -----------------------------------------------------------------------------------
    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(n, dim)`` unit vectors, one batch. Longer texts are cut to the model's context.

        Raises:
            QueryError: a text is empty.
        """
        for t in texts:
            settings.check_query_text(t)
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.model is None:
            return self.text_np.encode(list(texts))
        import torch  # lazy: heavy import (torch)

        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            emb = self._text_tower(tokens)
            emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        return emb.cpu().numpy().astype(np.float32, copy=False)

    def encode_fixed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`encode_texts` for texts the program always uses (the background prompts): from
        the numpy export, which keeps them, where there is one."""
        if self.text_np is not None:
            return self.text_np.encode_fixed(list(texts))
        return self.encode_texts(texts)

    def _text_tower(self, tokens: "torch.Tensor") -> "torch.Tensor":
        if self._trim_text is None:
            self._trim_text = _trimmed_text_matches(self.model, self.tokenizer, self.device)
        if self._trim_text:
            return _encode_text_trimmed(self.model, tokens)
        return self.model.encode_text(tokens)

    def too_long(self, text: str) -> bool:
        """True when ``text`` (with start/end tokens) exceeds the model's context and will be cut."""
        if self.model is None:
            return bool(self.text_np.too_long(text))
        encode = getattr(self.tokenizer, "encode", None)
        if encode is None:
            return False
        try:
            return len(encode(text)) + 2 > self.context_length
        except Exception:  # a tokenizer without a plain encode(); nothing to warn about
            return False

    def _probe_dim(self) -> int:
        proj = getattr(self.model, "text_projection", None)
        if proj is not None and hasattr(proj, "shape"):
            return int(proj.shape[-1])
        return int(self.encode_texts(["probe"]).shape[1])


class TextEncoder:
    """Texts only, on the numpy text tower (:mod:`indexer.model.text_tower`) in fp32: no torch, no
    open_clip, so a text query starts in a fraction of a second. The text half of
    :class:`Encoder`'s interface. (A loaded :class:`Encoder` keeps embedding texts with its own
    torch tower, which is faster once loaded: 25-60 ms against about 140 ms for five prompts.)"""

    precision = "fp32"
    text_precision = "fp32"

    def __init__(self, spec: ModelSpec, tower: Any) -> None:
        self.spec = spec
        self.text_np = tower
        self.dim = int(tower.dim)
        self.context_length = int(tower.context_length)

    @classmethod
    def open(cls, spec: ModelSpec) -> "TextEncoder | None":
        """The text encoder of ``spec`` when its tower was exported on this machine, else None."""
        tower = text_tower.NumpyTextTower.open(spec.name, spec.pretrained)
        return cls(spec, tower) if tower is not None else None

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> ``(n, dim)`` unit vectors (as :meth:`Encoder.encode_texts`).

        Raises:
            QueryError: a text is empty.
        """
        for t in texts:
            settings.check_query_text(t)
        return self.text_np.encode(list(texts))

    def encode_fixed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`encode_texts` for texts the program always uses, kept by the export."""
        return self.text_np.encode_fixed(list(texts))

    def too_long(self, text: str) -> bool:
        return bool(self.text_np.too_long(text))


def _plain_transform(preprocess: Any, size: int) -> tuple[Any, Any] | None:
    """(mean, std) tensors when ``preprocess`` is open_clip's usual Resize(size) -> CenterCrop(size)
    -> RGB -> ToTensor -> Normalize; None for anything else (which then goes through PIL)."""
    import torch  # lazy: heavy import (torch)

    steps = list(getattr(preprocess, "transforms", []))
    names = [type(t).__name__ for t in steps]
    if names != ["Resize", "CenterCrop", "MaybeConvertMode", "MaybeToTensor", "Normalize"] and names != [
        "Resize",
        "CenterCrop",
        "_convert_to_rgb",
        "ToTensor",
        "Normalize",
    ]:
        return None
    resize, crop, norm = steps[0], steps[1], steps[-1]
    rs = resize.size if isinstance(resize.size, int) else (resize.size[0] if len(resize.size) == 1 else None)
    if rs != size or tuple(crop.size) != (size, size) or getattr(resize, "max_size", None):
        return None
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(3, 1, 1)
    return mean, std


def _create(spec: ModelSpec, cache_dir: str | None) -> tuple[Any, Any]:
    import open_clip  # lazy: heavy import (torch)
    import torch  # lazy: heavy import (torch)

    if spec.random_weights:
        # Same seed, same weights in every process: vectors indexed by one process stay
        # comparable with queries embedded by another.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            model, _, preprocess = open_clip.create_model_and_transforms(spec.name, pretrained=None)
        return model, preprocess
    with _hub_mode_for_this_network():
        model, _, preprocess = open_clip.create_model_and_transforms(
            spec.name, pretrained=spec.pretrained, cache_dir=cache_dir
        )
    return model, preprocess


@contextlib.contextmanager
def _hub_mode_for_this_network(host: str = "huggingface.co", timeout_s: float = 3.0) -> Iterator[None]:
    """Use only the local cache when the model hub cannot be reached.

    Without this, huggingface_hub retries each file for about 25 s before giving up; with it, a
    cached model loads at once and a missing one fails at once with a clear message.
    """
    try:
        import huggingface_hub.constants as hf_constants  # lazy: only a weights download needs it
    except ImportError:  # pragma: no cover - open_clip then downloads by URL itself
        yield
        return
    if hf_constants.HF_HUB_OFFLINE or _reachable(host, timeout_s):
        yield
        return
    hf_constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        hf_constants.HF_HUB_OFFLINE = False


def _reachable(host: str, timeout_s: float) -> bool:
    try:
        with socket.create_connection((host, 443), timeout=timeout_s):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def quiet_library_logs() -> Iterator[None]:
    """Hold back open_clip's and huggingface_hub's log lines (the core reports through errors)."""
    root = logging.getLogger()
    old = root.level
    root.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        root.setLevel(old)


def _encode_text_trimmed(model: Any, tokens: "torch.Tensor") -> "torch.Tensor":
    """open_clip's CLIP.encode_text on only the first L token positions, L = the longest text.

    The text transformer is causal, so positions before the end-of-text token never see the
    padding after it: cutting the padding gives the same embeddings for a fraction of the work
    (a short query is ~8 of 77 positions). Used only after :func:`_trimmed_text_matches` checked it.
    """
    import torch  # lazy: heavy import (torch)
    from open_clip.model import text_global_pool  # lazy: heavy import (torch)

    length = int((tokens != 0).sum(dim=1).max().item())
    length = max(1, min(length, tokens.shape[1]))
    t = tokens[:, :length]
    cast_dtype = model.transformer.get_cast_dtype()
    x = model.token_embedding(t).to(cast_dtype)
    x = x + model.positional_embedding[:length].to(cast_dtype)
    mask = model.attn_mask[:length, :length] if model.attn_mask is not None else None
    x = model.transformer(x, attn_mask=mask)
    x = model.ln_final(x)
    x = text_global_pool(x, t, model.text_pool_type, eos_token_id=getattr(model, "text_eos_id", None))
    if model.text_projection is not None:
        x = (
            model.text_projection(x)
            if isinstance(model.text_projection, torch.nn.Linear)
            else x @ model.text_projection
        )
    return x


def _trimmed_text_matches(model: Any, tokenizer: Any, device: str) -> bool:
    """Use the trimmed text path only for plain causal CLIP text towers where it gives the same
    vectors as ``encode_text`` on a probe batch."""
    import torch  # lazy: heavy import (torch)

    needed = ("token_embedding", "positional_embedding", "transformer", "ln_final", "attn_mask", "text_pool_type")
    if not all(hasattr(model, a) for a in needed) or getattr(model, "attn_mask", None) is None:
        return False
    try:
        probe = tokenizer(["a photo of a dog on a beach.", "football", "a still from a video showing a red car."])
        probe = probe.to(device)
        with torch.inference_mode():
            full = model.encode_text(probe).float()
            trim = _encode_text_trimmed(model, probe).float()
        return bool(torch.allclose(full, trim, atol=1e-4, rtol=1e-4))
    except Exception:  # any surprise: keep open_clip's own path
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:300]
