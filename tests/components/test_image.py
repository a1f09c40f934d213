import numpy
import pytest
import spacy
from PIL import Image

from spacy_mulcot import ImageError, make_doc
from spacy_mulcot.encoders import EfficientNetLite0Encoder, HFVisionEncoder
from spacy_mulcot.images import decode_image

from ..helpers import make_image


def test_add_pipe_by_name_and_features(nlp_image, image_files):
    doc = nlp_image(make_doc(nlp_image, "a red square", image=str(image_files["red"])))
    feats = doc._.image_features
    assert feats["regions"].shape == (49, 1280) and feats["pooled"].shape == (1280,)
    assert feats["encoder"] == "efficientnet-lite0@224"
    assert numpy.isfinite(feats["regions"]).all()
    numpy.testing.assert_allclose(feats["pooled"], feats["regions"].mean(0), rtol=1e-4, atol=1e-5)


def test_doc_without_image_gets_none(nlp_image):
    doc = nlp_image(nlp_image.make_doc("no picture here"))
    assert doc._.image_features is None


def test_real_photo_gets_a_sensible_imagenet_class(photo_path):
    encoder = EfficientNetLite0Encoder()
    top = encoder.classify([Image.open(photo_path).convert("RGB")], top_k=5)[0]
    names = [name for name, _ in top]
    assert names[0] == "military uniform", top
    assert top[0][1] > 0.3


def test_identical_images_encoded_once_and_batched(image_files):
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("mulcot_image", config={"cache_size": 0})
    calls = []
    encode = comp.encoder.encode_prepared
    comp.encoder.encode_prepared = lambda images: calls.append(len(images)) or encode(images)
    paths = [image_files["red"], image_files["blue"], image_files["red_copy"], image_files["red"]]
    docs = [make_doc(nlp, f"post {i}", image=str(p)) for i, p in enumerate(paths)]
    docs.append(make_doc(nlp, "bytes", image=image_files["blue"].read_bytes()))
    out = list(nlp.pipe(docs, batch_size=5))
    assert calls == [2]  # one batch, two distinct images
    numpy.testing.assert_array_equal(out[0]._.image_features["pooled"], out[2]._.image_features["pooled"])
    numpy.testing.assert_array_equal(out[1]._.image_features["pooled"], out[4]._.image_features["pooled"])
    assert not numpy.allclose(out[0]._.image_features["pooled"], out[1]._.image_features["pooled"])


def test_cache_reuses_across_batches_and_batching_matches(image_files):
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("mulcot_image")
    docs = [make_doc(nlp, str(i), image=str(image_files["red" if i % 2 else "blue"])) for i in range(6)]
    batched = list(nlp.pipe(docs, batch_size=2))
    assert comp.n_encoded == 2
    comp.clear_cache()
    single = [nlp(make_doc(nlp, d.text, image=d._.image.path)) for d in docs]
    for a, b in zip(batched, single):
        numpy.testing.assert_allclose(a._.image_features["regions"], b._.image_features["regions"], atol=1e-4)


@pytest.mark.parametrize("which,message", [("missing", "not found"), ("corrupt", "corrupt or not an image")])
def test_bad_image_raises_naming_doc_and_file(nlp_image, image_files, which, message):
    doc = make_doc(nlp_image, "the bad post", image=str(image_files[which]))
    with pytest.raises(ImageError, match=message) as err:
        nlp_image(doc)
    assert "the bad post" in str(err.value) and str(image_files[which]) in str(err.value)


def test_bad_image_skipped_by_policy(image_files, caplog):
    nlp = spacy.blank("en")
    comp = nlp.add_pipe("mulcot_image", config={"on_error": "skip"})
    docs = [
        make_doc(nlp, "ok", image=str(image_files["red"])),
        make_doc(nlp, "bad", image=str(image_files["corrupt"])),
        make_doc(nlp, "gone", image=str(image_files["missing"])),
    ]
    out = list(nlp.pipe(docs))
    assert out[0]._.image_features is not None
    assert out[1]._.image_features is None and out[2]._.image_features is None
    assert comp.n_skipped == 2
    assert "corrupt.jpg" in caplog.text


def test_huge_image_refused_before_decoding(tmp_path):
    # A 10000x10000 PNG of one colour compresses to a few hundred KB but decodes to 300 MB.
    path = tmp_path / "bomb.png"
    Image.new("L", (10000, 10000)).save(path, optimize=True)
    with pytest.raises(ImageError, match="above the limit"):
        decode_image(path.read_bytes(), max_pixels=1_000_000, source=str(path))
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot_image", config={"max_pixels": 1_000_000})
    with pytest.raises(ImageError, match="bomb.png"):
        nlp(make_doc(nlp, "big", image=str(path)))


def test_exif_orientation_and_rgb():
    # Orientation 6 = rotate 90°: a 64x48 image must come out 48x64.
    img = decode_image(make_image(size=(64, 48), exif_orientation=6))
    assert img.size == (48, 64) and img.mode == "RGB"
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    import io

    buf = io.BytesIO()
    rgba.save(buf, format="PNG")
    out = decode_image(buf.getvalue())
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)


def test_bad_config_is_refused():
    nlp = spacy.blank("en")
    with pytest.raises(ValueError, match="on_error"):
        nlp.add_pipe("mulcot_image", config={"on_error": "ignore"})


def _save_tiny(tmp_path, kind):
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, ViTConfig, ViTModel

    folder = tmp_path / kind
    if kind == "clip":
        config = CLIPVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        CLIPVisionModel(config).save_pretrained(folder)
        CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    else:
        config = ViTConfig(
            hidden_size=24,
            intermediate_size=48,
            num_hidden_layers=1,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        )
        ViTModel(config).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("kind", ["clip", "vit"])
def test_hf_vision_encoder_from_local_path(tmp_path, image_files, kind):
    folder = _save_tiny(tmp_path, kind)
    nlp = spacy.blank("en")
    comp = nlp.add_pipe(
        "mulcot_image", config={"encoder": {"@architectures": "mulcot.HFVisionEncoder.v1", "name": str(folder)}}
    )
    assert isinstance(comp.encoder, HFVisionEncoder)
    doc = nlp(make_doc(nlp, "x", image=str(image_files["red"])))
    regions, pooled = doc._.image_features["regions"], doc._.image_features["pooled"]
    dim = 32 if kind == "clip" else 24
    assert regions.shape == (16, dim)  # 4x4 patches, CLS dropped
    assert pooled.shape == (dim,)
    assert doc._.image_features["encoder"] == f"hf:{folder}"


def test_hf_vision_encoder_unknown_name_is_clear(tmp_path):
    with pytest.raises(OSError, match="Cannot load a vision model"):
        HFVisionEncoder(str(tmp_path / "nope"))


def _photo_like(size=(1600, 1200), seed=0) -> bytes:
    """A JPEG with texture (so decoding scale matters), large enough for DCT scaling."""
    import io

    rng = numpy.random.default_rng(seed)
    small = rng.integers(0, 255, (size[1] // 40, size[0] // 40, 3), dtype=numpy.uint8)
    image = Image.fromarray(small).resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def test_jpeg_decoded_at_reduced_scale_only_as_far_as_the_encoder_allows():
    data = _photo_like()
    full = decode_image(data)
    reduced = decode_image(data, min_size=224)
    assert full.size == (1600, 1200)
    assert reduced.size == (400, 300)  # 1/4: both sides still >= 224 (1/8 would give 150)
    # The features of the reduced decode are those of the full one up to resampling.
    encoder = EfficientNetLite0Encoder(dtype="float32")
    (_, a), (_, b) = encoder.encode([full, reduced])
    assert float(numpy.dot(a, b) / numpy.linalg.norm(a) / numpy.linalg.norm(b)) > 0.98
    # Small images, other formats and rotated photos: nothing lost.
    assert decode_image(make_image(size=(300, 200)), min_size=224).size == (300, 200)
    assert decode_image(make_image(size=(1000, 800), fmt="PNG"), min_size=224).size == (1000, 800)
    rotated = decode_image(make_image(size=(1200, 500), exif_orientation=6), min_size=224)
    assert rotated.size == (250, 600)  # 1/2 scale (1/4 would make 125 < 224), then turned upright


def test_threaded_decoding_matches_inline_and_keeps_error_positions(image_files):
    def pipeline(threads, on_error="raise"):
        nlp = spacy.blank("en")
        nlp.add_pipe("mulcot_image", config={"decode_threads": threads, "batch_size": 2, "on_error": on_error})
        return nlp

    names = ["red", "blue", "red_copy", None, "blue", "red"]
    inline, threaded = pipeline(0), pipeline(2)

    def docs(nlp):
        return [make_doc(nlp, f"post {i}", image=str(image_files[n]) if n else None) for i, n in enumerate(names)]

    a = list(inline.pipe(docs(inline)))
    b = list(threaded.pipe(docs(threaded)))
    for x, y in zip(a, b):
        if x._.image_features is None:
            assert y._.image_features is None
        else:
            numpy.testing.assert_array_equal(x._.image_features["pooled"], y._.image_features["pooled"])
    assert threaded.get_pipe("mulcot_image").n_encoded == 2  # red and blue, once each
    bad = names[:4] + ["corrupt"]
    nlp = pipeline(2)
    with pytest.raises(ImageError, match=r"doc 4 .*corrupt\.jpg"):
        list(
            nlp.pipe([make_doc(nlp, f"post {i}", image=str(image_files[n]) if n else None) for i, n in enumerate(bad)])
        )
    nlp = pipeline(2, on_error="skip")
    out = list(nlp.pipe([make_doc(nlp, f"p {i}", image=str(image_files[n]) if n else None) for i, n in enumerate(bad)]))
    assert out[4]._.image_error and out[4]._.image_features is None and out[0]._.image_features is not None


def test_folded_encoder_gives_the_original_features():
    import torch

    encoder = EfficientNetLite0Encoder(dtype="float32")
    rng = numpy.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=numpy.uint8)) for _ in range(3)]
    pixels = encoder.preprocess([encoder.prepare(i) for i in images])
    with torch.inference_mode():
        reference = encoder.model.features(pixels)
        folded = encoder.features(pixels)
    torch.testing.assert_close(folded, reference, rtol=1e-3, atol=1e-3)
    bf16 = EfficientNetLite0Encoder(dtype="bfloat16")
    (_, a), (_, b) = encoder.encode(images[:1]) + bf16.encode(images[:1])
    assert float(numpy.dot(a, b) / numpy.linalg.norm(a) / numpy.linalg.norm(b)) > 0.99


@pytest.mark.slow
def test_compiled_encoder_gives_the_eager_features():
    rng = numpy.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 255, (240, 320, 3), dtype=numpy.uint8)) for _ in range(3)]
    eager = EfficientNetLite0Encoder(dtype="float32", micro_batch=2)
    compiled = EfficientNetLite0Encoder(dtype="float32", micro_batch=2, compile=True)
    for (ra, pa), (rb, pb) in zip(eager.encode(images), compiled.encode(images)):  # 2 + a padded 1
        numpy.testing.assert_allclose(ra, rb, rtol=1e-3, atol=1e-3)
        numpy.testing.assert_allclose(pa, pb, rtol=1e-3, atol=1e-3)
