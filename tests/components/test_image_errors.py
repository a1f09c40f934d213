"""Images that cannot be used: decoded faithfully or refused, errors naming the doc by
its position in the call, and no misleading warning downstream."""

import io
import warnings

import numpy
import pytest
import spacy
from PIL import Image

from spacy_mulcot import ImageError, make_doc
from spacy_mulcot.images import decode_image


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG" if image.mode != "F" else "TIFF")
    return buf.getvalue()


def test_16_bit_grey_is_scaled_not_clipped():
    """PIL's own convert("RGB") clips 16-bit values at 255: a mid-grey photo turned white."""
    values = numpy.array([[0, 16384], [32768, 65535]], dtype="uint16")
    out = decode_image(png(Image.fromarray(values)))
    assert out.mode == "RGB"
    assert [out.getpixel(xy)[0] for xy in ((0, 0), (1, 0), (0, 1), (1, 1))] == [0, 64, 128, 255]


@pytest.mark.parametrize(
    "values,expected",
    [([[0.0, 0.5], [1.0, 0.25]], [0, 128, 255, 64]), ([[0.0, 100.0], [255.0, 10.0]], [0, 100, 255, 10])],
)
def test_float_images_in_a_known_range_are_scaled(values, expected):
    out = decode_image(png(Image.fromarray(numpy.array(values, dtype="float32"), mode="F")))
    assert [out.getpixel(xy)[0] for xy in ((0, 0), (1, 0), (0, 1), (1, 1))] == expected


def test_float_image_of_unknown_range_is_refused():
    with pytest.raises(ImageError, match=r"mode F with values in \[-3, 900\].*range is unknown"):
        decode_image(png(Image.fromarray(numpy.array([[-3.0, 900.0]], dtype="float32"), mode="F")), source="x.tif")


def test_palette_cmyk_and_grey_modes_decode(tmp_path):
    for mode, color in (("P", 3), ("CMYK", (0, 255, 255, 0)), ("L", 77), ("1", 1), ("LA", (10, 255))):
        image = Image.new(mode, (3, 2), color)
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        buf = io.BytesIO()
        image.save(buf, format=fmt)
        out = decode_image(buf.getvalue())
        assert out.mode == "RGB" and out.size == (3, 2), mode


def test_error_names_the_docs_position_in_this_call_not_a_running_count(tmp_path):
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot_image")
    good = tmp_path / "good.png"
    good.write_bytes(png(Image.new("RGB", (8, 8), (1, 2, 3))))
    for _ in range(3):  # docs the component saw before
        list(nlp.pipe([make_doc(nlp, "fine", image=str(good))]))
    docs = [make_doc(nlp, "first", image=str(good)), make_doc(nlp, "second", image=str(tmp_path / "gone.jpg"))]
    with pytest.raises(ImageError, match=r"doc 1 \('second'\).*gone.jpg"):
        list(nlp.pipe(docs, batch_size=1))


def test_skipped_image_is_recorded_and_mulcot_does_not_blame_the_pipeline_order(tmp_path):
    from ..helpers import build_nlp, gold_docs, train

    nlp = build_nlp()
    nlp.replace_pipe("mulcot_image", "mulcot_image", config={"on_error": "skip"})
    gold = gold_docs(nlp, tmp_path)
    from spacy.training import Example

    train(nlp, [Example(nlp.make_doc(d.text), d) for d in gold], steps=1)
    doc = make_doc(nlp, "Loving the new Tesla", image=str(tmp_path / "gone.jpg"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old "put mulcot_image before mulcot" warning would fail here
        out = nlp(doc)
    assert out._.image_features is None and "not found" in out._.image_error
    assert abs(sum(out.cats.values()) - 1.0) < 1e-5
    # Without the featurizer the warning is still given.
    nlp.remove_pipe("mulcot_image")
    with pytest.warns(UserWarning, match="put `mulcot_image` before"):
        nlp(make_doc(nlp, "Loving the new Tesla", image=str(tmp_path / "post0.jpg")))


def _jpeg(size=(300, 200)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, format="JPEG")
    return buf.getvalue()


def test_lazily_opened_truncated_image_is_the_projects_image_error(tmp_path):
    """Before: a raw OSError from the doc._.image setter (and from nlp(doc) under skip)."""
    data = _jpeg()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot_image")
    doc = make_doc(nlp, "a post", image=Image.open(tmp_path / "cut.jpg"))  # the setter no longer decodes
    with pytest.raises(ImageError, match="corrupt or truncated"):
        nlp(doc)
    nlp.replace_pipe("mulcot_image", "mulcot_image", config={"on_error": "skip"})
    out = nlp(make_doc(nlp, "a post", image=Image.open(tmp_path / "cut.jpg")))
    assert out._.image_features is None and "truncated" in out._.image_error
    # A whole lazily opened image still works, and its hash is its pixels' (as if loaded).
    (tmp_path / "ok.jpg").write_bytes(data)
    lazy, eager = Image.open(tmp_path / "ok.jpg"), Image.open(tmp_path / "ok.jpg")
    eager.load()
    assert nlp(make_doc(nlp, "a post", image=lazy))._.image_features is not None
    assert make_doc(nlp, "x", image=lazy)._.image.key == make_doc(nlp, "x", image=eager)._.image.key


def test_lazily_opened_huge_image_is_refused_before_it_is_decoded(tmp_path):
    (tmp_path / "big.jpg").write_bytes(_jpeg((400, 300)))
    nlp = spacy.blank("en")
    nlp.add_pipe("mulcot_image", config={"max_pixels": 10_000, "on_error": "skip"})
    image = Image.open(tmp_path / "big.jpg")
    out = nlp(make_doc(nlp, "a post", image=image))
    assert "above the limit of 10000" in out._.image_error
    assert image.tile, "the pixels were decoded before the size was checked"
